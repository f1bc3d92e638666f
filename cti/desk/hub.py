"""The agent hub: one sequenced stream of messages per agent, fanned out to
every connection (tab) of that agent, with a replay buffer for resumes and
the answers to recent command ids for idempotent retries.

No IO here: a connection is anything with `deliver(text) -> bool` (the
websocket layer gives each a bounded queue and returns False when it is
full: the hub then drops that connection, never waits on it).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from cti.desk.protocol import Reply, Snapshot, StreamMessage

log = structlog.get_logger(__name__)

REPLAY = 256          # stream messages kept per agent for resumes
REMEMBERED = 256      # command ids (and their answers) kept per agent


class Connection(Protocol):
    def deliver(self, text: str) -> bool:
        """Queue `text` for sending; False when the connection cannot keep up."""

    def drop(self, reason: str) -> None:
        """Close the connection (it fell behind, or the agent logged out)."""


@dataclass(slots=True)
class _Stream:
    """One agent's stream. `id` changes with each process, so a desk that
    resumes against a restarted server gets a snapshot, not a wrong replay."""

    id: str = field(default_factory=lambda: secrets.token_hex(8))
    seq: int = 0
    replay: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=REPLAY))
    answers: OrderedDict[str, Reply] = field(default_factory=OrderedDict)
    connections: list[Connection] = field(default_factory=list)


class Hub:
    def __init__(self, *, replay: int = REPLAY, remembered: int = REMEMBERED) -> None:
        self._replay = replay
        self._remembered = remembered
        self._streams: dict[str, _Stream] = {}
        self.dropped = 0

    def _stream(self, agent_id: str) -> _Stream:
        stream = self._streams.get(agent_id)
        if stream is None:
            stream = _Stream(replay=deque(maxlen=self._replay))
            self._streams[agent_id] = stream
        return stream

    # -- the stream ------------------------------------------------------------------

    def publish(self, agent_id: str, message: StreamMessage) -> int:
        """Number `message` in the agent's stream, keep it for resumes and
        send it to each of the agent's connections; the new seq."""
        stream = self._stream(agent_id)
        stream.seq += 1
        text = message.text(stream.seq)
        stream.replay.append((stream.seq, text))
        self._fan_out(agent_id, stream, text)
        return stream.seq

    def attach_with_snapshot(self, agent_id: str, connection: Connection,
                             snapshot: Snapshot) -> None:
        """Add a connection and publish a snapshot: it takes the next seq,
        so later messages continue from it; the other tabs get it too (it
        is the truth, and keeps their numbering in step)."""
        stream = self._stream(agent_id)
        if connection not in stream.connections:
            stream.connections.append(connection)
        self.publish(agent_id, snapshot)

    def seq(self, agent_id: str) -> int:
        return self._stream(agent_id).seq

    def stream_id(self, agent_id: str) -> str:
        return self._stream(agent_id).id

    def attach(self, agent_id: str, connection: Connection, stream_id: str | None,
               last_seq: int | None) -> bool:
        """Add a connection. With `last_seq` of this same stream, send it
        exactly the messages after it and return True; return False when
        that is impossible (another stream, too old, in the future, or no
        resume asked): the caller sends a snapshot."""
        stream = self._stream(agent_id)
        missed = self._missed(stream, stream_id, last_seq)
        if missed is None:
            return False
        for text in missed:
            if not connection.deliver(text):
                connection.drop("too slow")
                return True
        stream.connections.append(connection)
        return True

    @staticmethod
    def _missed(stream: _Stream, stream_id: str | None,
                last_seq: int | None) -> list[str] | None:
        if last_seq is None or stream_id != stream.id or last_seq > stream.seq:
            return None
        if last_seq == stream.seq:
            return []
        oldest = stream.replay[0][0] if stream.replay else stream.seq + 1
        if last_seq + 1 < oldest:
            return None
        return [text for seq, text in stream.replay if seq > last_seq]

    def detach(self, agent_id: str, connection: Connection) -> None:
        stream = self._streams.get(agent_id)
        if stream is not None and connection in stream.connections:
            stream.connections.remove(connection)

    def connections(self, agent_id: str) -> int:
        stream = self._streams.get(agent_id)
        return 0 if stream is None else len(stream.connections)

    def _fan_out(self, agent_id: str, stream: _Stream, text: str) -> None:
        for connection in list(stream.connections):
            if not connection.deliver(text):
                stream.connections.remove(connection)
                self.dropped += 1
                log.warning("desk.connection_dropped", agent_id=agent_id, reason="too slow")
                connection.drop("too slow")

    # -- replies and idempotency ----------------------------------------------------------

    def reply(self, agent_id: str, connection: Connection, message: Reply) -> None:
        """A reply to one connection, stamped with the stream position."""
        text = message.text(self.seq(agent_id))
        if not connection.deliver(text):
            self.detach(agent_id, connection)
            connection.drop("too slow")

    def answer_of(self, agent_id: str, command_id: str) -> Reply | None:
        """The answer already given to this command id, if any."""
        stream = self._stream(agent_id)
        answer = stream.answers.get(command_id)
        if answer is not None:
            stream.answers.move_to_end(command_id)
        return answer

    def remember(self, agent_id: str, command_id: str, answer: Reply) -> None:
        stream = self._stream(agent_id)
        stream.answers[command_id] = answer
        stream.answers.move_to_end(command_id)
        while len(stream.answers) > self._remembered:
            stream.answers.popitem(last=False)
