"""CallMemo: what this process wrote about a call for its screen pop (the
IVR outcome, agents' notes on a transfer), kept in memory beside the Redis
copy so the pop is built without a round trip.

The values are the same JSON texts as in Redis (`cti:call:{id}:ivr`,
`cti:call:{id}:notes`), parsed by the same code. The memo only knows what
this process wrote: the pop still reads Redis after it is sent, and
updates it when another process (another node, or this one before a
restart) wrote more. Bounded: the oldest calls are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, cast

SIZE = 20_000

T = TypeVar("T")


@dataclass(slots=True)
class _Memo:
    ivr: str | None = None
    notes: list[str] = field(default_factory=list)
    # What a consumer parsed of `ivr`, by consumer: computed once per outcome.
    parsed_ivr: dict[str, object] = field(default_factory=dict)


class CallMemo:
    """Per call: the IVR outcome and the agents' notes this process wrote,
    as the JSON texts Redis holds; the oldest calls forgotten first."""

    def __init__(self, *, size: int = SIZE) -> None:
        self._size = size
        self._calls: OrderedDict[str, _Memo] = OrderedDict()
        # Told of each call id whose IVR outcome was written, to parse it
        # now, off the pop's path. Must not block.
        self.on_ivr: list[Callable[[str], object]] = []

    def _memo(self, call_id: str) -> _Memo:
        memo = self._calls.get(call_id)
        if memo is None:
            memo = self._calls[call_id] = _Memo()
            while len(self._calls) > self._size:
                self._calls.popitem(last=False)
        return memo

    def put_ivr(self, call_id: str, outcome_json: str) -> None:
        memo = self._memo(call_id)
        memo.ivr = outcome_json
        memo.parsed_ivr.clear()
        for listener in self.on_ivr:
            listener(call_id)

    def ivr_as(self, call_id: str, key: str, parse: Callable[[str], T]) -> T | None:
        """`parse` of the call's IVR outcome, run once per outcome and kept
        under `key`; None when there is no outcome."""
        memo = self._calls.get(call_id)
        if memo is None or memo.ivr is None:
            return None
        try:
            return cast(T, memo.parsed_ivr[key])
        except KeyError:
            parsed = memo.parsed_ivr[key] = parse(memo.ivr)
            return parsed

    def add_note(self, call_id: str, note_json: str, *, keep: int) -> None:
        notes = self._memo(call_id).notes
        notes.append(note_json)
        del notes[:-keep]

    def remove_note(self, call_id: str, note_json: str) -> None:
        memo = self._calls.get(call_id)
        if memo is not None and note_json in memo.notes:
            # The last one, as Redis LREM with a negative count removes.
            index = len(memo.notes) - 1 - memo.notes[::-1].index(note_json)
            del memo.notes[index]

    def notes(self, call_id: str) -> list[str]:
        memo = self._calls.get(call_id)
        return [] if memo is None else list(memo.notes)

    def forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)
