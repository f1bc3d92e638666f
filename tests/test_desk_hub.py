"""The agent hub: per-agent sequence numbers, exact resume or snapshot,
idempotent command ids, isolation between agents, slow tabs dropped."""

from __future__ import annotations

import json

from cti.desk.hub import Hub
from cti.desk.protocol import Ack, AgentView, CallProgress, Snapshot, StateMessage


class Tab:
    def __init__(self, room: int = 1000) -> None:
        self.received: list[dict[str, object]] = []
        self.room = room
        self.dropped: str | None = None

    def deliver(self, text: str) -> bool:
        if len(self.received) >= self.room:
            return False
        self.received.append(json.loads(text))
        return True

    def drop(self, reason: str) -> None:
        self.dropped = reason

    @property
    def seqs(self) -> list[object]:
        return [m["seq"] for m in self.received]


def _state(agent: str, state: str) -> StateMessage:
    return StateMessage(agent=AgentView(id=agent, name=agent, state=state, since=0.0))


def _progress(call: str) -> CallProgress:
    return CallProgress(call_id=call, progress="ringing")


def test_each_agent_has_its_own_gapless_sequence_and_sees_only_its_messages() -> None:
    hub = Hub()
    bob, carol = Tab(), Tab()
    assert not hub.attach("bob", bob, None, None)
    hub.attach_with_snapshot("bob", bob, _snapshot("bob"))
    hub.attach_with_snapshot("carol", carol, _snapshot("carol"))
    for _ in range(3):
        hub.publish("bob", _state("bob", "available"))
    hub.publish("carol", _progress("c1"))
    assert bob.seqs == [1, 2, 3, 4]
    assert carol.seqs == [1, 2]
    assert all(m.get("agent", {}).get("id", "bob") == "bob" for m in bob.received)  # type: ignore[union-attr]
    assert not any(m["type"] == "call_progress" for m in bob.received)


def _snapshot(agent: str) -> Snapshot:
    return Snapshot(agent=AgentView(id=agent, name=agent, state="available", since=0.0),
                    pop=None, last_call=None, disposition_pending=False)


def test_two_tabs_of_one_agent_get_the_same_messages_with_the_same_numbers() -> None:
    hub = Hub()
    first, second = Tab(), Tab()
    hub.attach_with_snapshot("bob", first, _snapshot("bob"))
    hub.attach_with_snapshot("bob", second, _snapshot("bob"))
    hub.publish("bob", _progress("c1"))
    assert second.received == first.received[1:]
    assert first.seqs == [1, 2, 3]


def test_a_resume_gets_exactly_the_missed_messages() -> None:
    hub = Hub()
    tab = Tab()
    hub.attach_with_snapshot("bob", tab, _snapshot("bob"))
    hub.publish("bob", _progress("c1"))
    hub.detach("bob", tab)
    for call in ("c2", "c3", "c4"):
        hub.publish("bob", _progress(call))
    again = Tab()
    assert hub.attach("bob", again, hub.stream_id("bob"), last_seq=2)
    assert again.seqs == [3, 4, 5]
    assert [m["call_id"] for m in again.received] == ["c2", "c3", "c4"]
    hub.publish("bob", _progress("c5"))
    assert again.seqs[-1] == 6


def test_a_resume_that_is_too_old_another_stream_or_in_the_future_asks_for_a_snapshot() -> None:
    hub = Hub(replay=4)
    for call in range(10):
        hub.publish("bob", _progress(f"c{call}"))
    stream = hub.stream_id("bob")
    assert not hub.attach("bob", Tab(), stream, last_seq=2)       # lost from the buffer
    assert not hub.attach("bob", Tab(), "restarted", last_seq=9)  # another server run
    assert not hub.attach("bob", Tab(), stream, last_seq=11)      # ahead of us
    up_to_date = Tab()
    assert hub.attach("bob", up_to_date, stream, last_seq=10)
    assert up_to_date.received == []
    just_in = Tab()
    assert hub.attach("bob", just_in, stream, last_seq=6)
    assert just_in.seqs == [7, 8, 9, 10]


def test_a_command_id_is_answered_once_and_remembered_per_agent() -> None:
    hub = Hub(remembered=2)
    answer = Ack(command_id="a1", result={"state": "available"})
    hub.remember("bob", "a1", answer)
    assert hub.answer_of("bob", "a1") == answer
    assert hub.answer_of("carol", "a1") is None
    hub.remember("bob", "a2", Ack(command_id="a2"))
    hub.answer_of("bob", "a1")  # recently used: kept
    hub.remember("bob", "a3", Ack(command_id="a3"))
    assert hub.answer_of("bob", "a1") is not None
    assert hub.answer_of("bob", "a2") is None


def test_replies_carry_the_stream_position_without_advancing_it() -> None:
    hub = Hub()
    tab = Tab()
    hub.attach_with_snapshot("bob", tab, _snapshot("bob"))
    hub.reply("bob", tab, Ack(command_id="x"))
    hub.publish("bob", _progress("c1"))
    assert [(m["type"], m["seq"]) for m in tab.received] == [
        ("snapshot", 1), ("ack", 1), ("call_progress", 2)]


def test_a_tab_that_cannot_keep_up_is_dropped_and_the_others_carry_on() -> None:
    hub = Hub()
    slow, fast = Tab(room=2), Tab()
    hub.attach_with_snapshot("bob", slow, _snapshot("bob"))
    hub.attach_with_snapshot("bob", fast, _snapshot("bob"))
    for call in range(5):
        hub.publish("bob", _progress(f"c{call}"))
    assert slow.dropped == "too slow"
    assert hub.connections("bob") == 1
    assert fast.seqs == [2, 3, 4, 5, 6, 7]
    assert hub.dropped == 1
