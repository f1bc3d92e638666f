"""The parts of the server beyond the routing core, each installed on the
running `Server` by one function: `install(server) -> Feature`.

`install` runs while the server is built (it adds its HTTP routes, its
switchboard listeners, its FastAGI routes); `start()` runs before the HTTP
listener opens and `stop()` after the switchboard stopped taking work, in
reverse order. A feature reaches the rest only through the server's public
attributes (settings, center, store, customers, caller_lookups, sessions,
tracker, switchboard, link, web, registry, clock).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cti.app import Server


class Feature(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


Installer = Callable[["Server"], Feature]


def installers() -> list[Installer]:
    """Every feature, in start order. Imported here, lazily, so that a
    feature's module loads only when a server is built."""
    from cti import callbacks, desk  # noqa: PLC0415
    from cti.ivr import feature as ivr  # noqa: PLC0415
    from cti.wallboard import install as install_wallboard  # noqa: PLC0415

    # The callback feature before the wallboard, which shows its counts.
    return [ivr.install, desk.install, callbacks.install, install_wallboard]
