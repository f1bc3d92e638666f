"""The validated form of an action on its way to Asterisk.

`cti.pbx.commands` builds `AmiAction`s from typed commands after checking
every value; `cti.pbx.link` sends them. Nothing else builds one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AmiAction:
    """One AMI action, ready for the wire (ActionID is added by the link).

    `list_complete` names the event that ends the answer when the action
    answers with an event list (`CoreShowChannelsComplete`...); None means a
    single response. `idempotent` says whether re-sending is harmless; the
    link never re-sends on its own either way, it is information for callers.
    """

    name: str
    fields: tuple[tuple[str, str], ...]
    list_complete: str | None = None
    idempotent: bool = False
