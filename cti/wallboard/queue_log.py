"""Asterisk `queue_log` lines for the server's own routing, so that
QueueMetrics or Asternic keep working: `epoch|callid|queue|agent|EVENT|data...`
with the data fields of Asterisk's app_queue (holdtime, calltime, ringtime
in the units it uses). A service is the queue; an agent is `Agent/<id>`.

The line builders are pure; `QueueLog` buffers lines and appends them to
the file from the writer task (a thread does the file IO).
"""

from __future__ import annotations

import asyncio
from pathlib import Path


def _line(at: float, call: str, queue: str, agent: str, event: str, *data: object) -> str:
    fields = [str(int(at)), call or "NONE", queue or "NONE", agent or "NONE", event,
              *(_clean(value) for value in data)]
    return "|".join(fields)


def _clean(value: object) -> str:
    # A `|` or newline inside a field would shift every column after it.
    return "" if value is None else str(value).replace("|", " ").replace("\n", " ")


def _member(agent: str) -> str:
    return f"Agent/{agent}"


def enter_queue(at: float, call: str, queue: str, caller: str | None) -> str:
    return _line(at, call, queue, "NONE", "ENTERQUEUE", "", caller or "", 1)


def connect(at: float, call: str, queue: str, agent: str, wait_s: float) -> str:
    return _line(at, call, queue, _member(agent), "CONNECT", round(wait_s), call, 0)


def complete_agent(at: float, call: str, queue: str, agent: str, *, wait_s: float,
                   talk_s: float) -> str:
    return _line(at, call, queue, _member(agent), "COMPLETEAGENT", round(wait_s),
                 round(talk_s), 1)


def complete_caller(at: float, call: str, queue: str, agent: str, *, wait_s: float,
                    talk_s: float) -> str:
    return _line(at, call, queue, _member(agent), "COMPLETECALLER", round(wait_s),
                 round(talk_s), 1)


def abandon(at: float, call: str, queue: str, wait_s: float) -> str:
    return _line(at, call, queue, "NONE", "ABANDON", 1, 1, round(wait_s))


def ring_no_answer(at: float, call: str, queue: str, agent: str, ring_ms: int) -> str:
    return _line(at, call, queue, _member(agent), "RINGNOANSWER", ring_ms)


def pause(at: float, agent: str, reason: str) -> str:
    return _line(at, "NONE", "NONE", _member(agent), "PAUSE", reason)


def unpause(at: float, agent: str) -> str:
    return _line(at, "NONE", "NONE", _member(agent), "UNPAUSE", "")


def add_member(at: float, queue: str, agent: str) -> str:
    return _line(at, "NONE", queue, _member(agent), "ADDMEMBER", "")


def remove_member(at: float, queue: str, agent: str) -> str:
    return _line(at, "NONE", queue, _member(agent), "REMOVEMEMBER", "")


class QueueLog:
    """Lines waiting to be appended to `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: list[str] = []

    def add(self, line: str) -> None:
        self._pending.append(line)

    async def write(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        text = "".join(f"{line}\n" for line in lines)
        await asyncio.to_thread(self._append, text)

    def _append(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            out.write(text)
