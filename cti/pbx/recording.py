"""Reading recordings of real Asterisk traffic (the `asterisk-22` format).

A recording is a text file of entries: a header line
`### <dir> <conn> +<ms>ms[ partial]` followed by the exact wire bytes. This
module turns it into timed AMI messages per connection; it knows the file
format and nothing of what the messages mean.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cti.pbx.wire import BANNER_PREFIX, AmiMessage, MessageReader

_HEADER = re.compile(rb"^### (<<|>>|--) (\S+) \+(\d+)ms( partial)?(?: (.*))?$")


class RecordingError(ValueError):
    """The file is not a recording in the expected format."""


@dataclass(frozen=True, slots=True)
class Entry:
    direction: str  # "<<" received, ">>" sent, "--" note
    conn: str
    ms: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class TimedMessage:
    """An AMI message received on `conn`, `ms` after the recording started."""

    conn: str
    ms: int
    message: AmiMessage


def read_entries(path: Path) -> list[Entry]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc.strerror}") from exc
    entries: list[Entry] = []
    lines = data.split(b"\n")
    index = 0
    while index < len(lines) and lines[index].startswith(b"# "):
        index += 1
    current: tuple[str, str, int] | None = None
    body: list[bytes] = []

    def flush() -> None:
        if current is not None:
            direction, conn, ms = current
            payload = b"\n".join(body)
            entries.append(Entry(direction, conn, ms, payload))

    for lineno in range(index, len(lines)):
        line = lines[lineno]
        if line.startswith(b"### "):
            match = _HEADER.match(line)
            if not match:
                raise RecordingError(f"{path}:{lineno + 1}: malformed entry header {line[:80]!r}")
            flush()
            body = []
            direction, conn, ms = match.group(1), match.group(2), match.group(3)
            current = (direction.decode(), conn.decode(), int(ms))
        elif current is None:
            if line.strip():
                raise RecordingError(
                    f"{path}:{lineno + 1}: not a recording (expected a '### ' entry header)"
                )
        else:
            body.append(line)
    flush()
    if not entries:
        raise RecordingError(f"{path}: not a recording (no '### ' entries)")
    # Each payload ran up to the next header; the split on b"\n" left the
    # newline that precedes that header out, and the payload's own last
    # newline with it: put it back (AMI payloads end in CRLF CRLF).
    return [Entry(e.direction, e.conn, e.ms, e.payload + b"\n") for e in entries]


def ami_messages(path: Path) -> Iterator[TimedMessage]:
    """Every AMI message received on every AMI connection, in file order.

    A connection is AMI when the first bytes it received are the Asterisk
    banner; FastAGI connections (which start with the `agi_*` block) are left
    out.
    """
    readers: dict[str, MessageReader] = {}
    kinds: dict[str, bool] = {}
    for entry in read_entries(path):
        if entry.direction != "<<":
            continue
        if entry.conn not in kinds:
            kinds[entry.conn] = entry.payload.startswith(BANNER_PREFIX)
        if not kinds[entry.conn]:
            continue
        reader = readers.setdefault(entry.conn, MessageReader())
        for message in reader.feed(entry.payload):
            yield TimedMessage(entry.conn, entry.ms, message)


def agi_entries(path: Path) -> dict[str, list[Entry]]:
    """Entries of the FastAGI connections, by connection, in order."""
    conns: dict[str, list[Entry]] = {}
    kinds: dict[str, bool] = {}
    for entry in read_entries(path):
        if entry.direction == "--":
            continue
        if entry.conn not in kinds:
            kinds[entry.conn] = entry.payload.startswith(b"agi_")
        if kinds[entry.conn]:
            conns.setdefault(entry.conn, []).append(entry)
    return conns
