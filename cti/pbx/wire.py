"""The AMI wire format: framing bytes into messages and actions into bytes.

An AMI message is an ordered list of `Key: Value` lines ended by an empty
line (CRLF CRLF). Keys may repeat (`Variable:` in `Status` items, `Output:`
in `Command` replies), so a message keeps every pair in order. Messages are
split on bytes and decoded whole, so a UTF-8 character cut across two TCP
reads is never damaged (panoramisk defect 7).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

BANNER_PREFIX = b"Asterisk Call Manager/"
TERMINATOR = b"\r\n\r\n"
MAX_MESSAGE_BYTES = 1 << 20


# The lower-case form of the few dozen field names the code asks for.
_LOWERED: dict[str, str] = {}
_LOWERED_MAX = 4096


class WireError(ValueError):
    """A message that cannot be framed or parsed."""


@dataclass(frozen=True, slots=True)
class AmiMessage:
    """One AMI message: its header pairs, in wire order, duplicates kept."""

    pairs: tuple[tuple[str, str], ...]
    # First value per lower-cased key, built on the first lookup: the
    # translator reads a dozen fields of each of thousands of events a second.
    _first: dict[str, str] | None = field(default=None, compare=False, repr=False)

    def get(self, key: str, default: str | None = None) -> str | None:
        """First value of `key` (case-insensitive, as Asterisk treats keys)."""
        first = self._first
        if first is None:
            first = {}
            for name, value in self.pairs:
                first.setdefault(name.lower(), value)
            object.__setattr__(self, "_first", first)
        lowered = _LOWERED.get(key)
        if lowered is None:
            lowered = key.lower()
            if len(_LOWERED) < _LOWERED_MAX:
                _LOWERED[key] = lowered
        return first.get(lowered, default)

    def getall(self, key: str) -> list[str]:
        lowered = key.lower()
        return [value for name, value in self.pairs if name.lower() == lowered]

    def as_dict(self) -> dict[str, str]:
        """Last value wins; only for fields known not to repeat."""
        return {name: value for name, value in self.pairs}

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def response(self) -> str | None:
        return self.get("Response")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")


def parse_message(block: bytes) -> AmiMessage:
    """Parse one message (without its terminating blank line).

    Lines without a colon are kept under the empty key so that nothing the
    PBX said is silently lost; a `Key:` with no value gives an empty value.
    """
    text = block.decode("utf-8", errors="replace")
    pairs: list[tuple[str, str]] = []
    append = pairs.append
    for line in text.split("\r\n"):
        name, sep, value = line.partition(": ")
        if sep and name.strip() == name:  # Asterisk's own `Key: Value`
            append((name, value))
            continue
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            append(("", line))
            continue
        append((name.strip(), value[1:] if value.startswith(" ") else value))
    return AmiMessage(tuple(pairs))


class MessageReader:
    """Incremental framing: feed bytes as they arrive, get whole messages.

    The banner line (`Asterisk Call Manager/x.y.z`) has no blank line after
    it; it is returned as a message with the single key `Banner`.
    """

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_message_bytes
        self._banner_seen = False

    def feed(self, data: bytes) -> list[AmiMessage]:
        self._buffer += data
        messages: list[AmiMessage] = []
        if not self._banner_seen:
            if len(self._buffer) < len(BANNER_PREFIX) and BANNER_PREFIX.startswith(
                bytes(self._buffer)
            ):
                return messages
            if self._buffer.startswith(BANNER_PREFIX):
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    return messages
                banner = bytes(self._buffer[:end]).decode("utf-8", errors="replace")
                del self._buffer[: end + 2]
                messages.append(AmiMessage((("Banner", banner),)))
            self._banner_seen = True
        while True:
            end = self._buffer.find(TERMINATOR)
            if end < 0:
                if len(self._buffer) > self._max:
                    size = len(self._buffer)
                    self._buffer.clear()
                    raise WireError(f"AMI message larger than {self._max} bytes ({size})")
                return messages
            block = bytes(self._buffer[:end])
            del self._buffer[: end + len(TERMINATOR)]
            if block.strip():
                messages.append(parse_message(block))


def iter_messages(payload: bytes) -> Iterator[AmiMessage]:
    """Messages of a complete byte string (a recording entry, a test fixture)."""
    reader = MessageReader()
    yield from reader.feed(payload)


def encode_action(name: str, fields: Iterable[tuple[str, str]] | Mapping[str, str]) -> bytes:
    """Encode an action. Values were validated by `cti.pbx.commands`; this
    still refuses CR/LF so that no caller can smuggle a header."""
    items = fields.items() if isinstance(fields, Mapping) else fields
    lines = [f"Action: {name}"]
    for key, value in items:
        if any(ch in key or ch in value for ch in "\r\n") or ":" in key:
            raise WireError(f"refusing AMI header {key!r}: CR, LF or colon inside")
        lines.append(f"{key}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
