"""`cti serve` as a separate process against `cti sim` and a real
redis-server: calls flow end to end, and the routing rules hold on the
resulting calls and agent states (issues 3 and 4)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from tests.stack import center_file, stack

pytestmark = pytest.mark.timeout(90)


def _at(entry: dict[str, object]) -> float:
    return datetime.fromisoformat(str(entry["timestamp"]).replace("Z", "+00:00")).timestamp()


async def test_a_call_is_routed_answered_and_ended(tmp_path: Path) -> None:
    center = center_file(tmp_path, [{"id": "1001", "name": "Bob", "skills": {"support": 5}}])
    async with stack(tmp_path, center) as s:
        status, body = await s.http_get("/readyz")
        assert status == 200, body
        await s.call(patience=60, number="+33612345678", name="Alice Dupont")
        (assigned,) = await s.log.wait("routing.assigned", agent_id="1001")
        await s.ami.event("UserEvent", UserEvent="CTIConnecting", CtiAgent="1001")
        await s.log.wait("routing.answered", agent_id="1001")
        # Bob talks 8 s, then hangs up.
        (ended,) = await s.log.wait("call.ended", within=30.0)
        assert ended["outcome"] == "answered"
        assert ended["call_id"] == assigned["call_id"]
        assert ended["agent_id"] == "Local/1001@sim-agent"
        assert 0 <= ended["wait_ms"] < 3000
        assert 7000 <= ended["talk_ms"] <= 10000
        status, metrics = await s.http_get("/metrics")
        assert status == 200
        assert "cti_ami_connected 1.0" in metrics
        assert 'cti_calls_ended_total{outcome="answered"} 1.0' in metrics


async def test_ring_no_answer_pauses_the_agent_and_the_next_one_gets_the_call(
        tmp_path: Path) -> None:
    # Dave (1003) never answers and has the better level: he is tried first.
    center = center_file(tmp_path, [
        {"id": "1003", "name": "Dave", "skills": {"support": 9}},
        {"id": "1001", "name": "Bob", "skills": {"support": 3}},
    ])
    async with stack(tmp_path, center) as s:
        await s.call(patience=60)
        first = await s.log.wait("routing.assigned", agent_id="1003")
        (rona,) = await s.log.wait("routing.ring_no_answer", within=20.0)
        assert rona["agent_id"] == "1003" and rona["paused"] is True
        assert rona["dial_status"] == "NOANSWER"
        second = await s.log.wait("routing.assigned", agent_id="1001")
        assert second[0]["call_id"] == first[0]["call_id"]
        await s.log.wait("routing.answered", agent_id="1001")
        (ended,) = await s.log.wait("call.ended", within=30.0)
        assert ended["outcome"] == "answered"
        # The caller's wait covers Dave's ring time: the place was kept.
        assert ended["wait_ms"] >= 5000


async def test_a_busy_agent_is_released_without_a_pause(tmp_path: Path) -> None:
    center = center_file(tmp_path, [
        {"id": "1004", "name": "Erin", "skills": {"support": 9}},
        {"id": "1001", "name": "Bob", "skills": {"support": 3}},
    ])
    async with stack(tmp_path, center) as s:
        await s.call(patience=60)
        (rona,) = await s.log.wait("routing.ring_no_answer", agent_id="1004")
        assert rona["dial_status"] == "BUSY" and rona["paused"] is False
        await s.log.wait("routing.assigned", agent_id="1001")
        await s.log.wait("routing.answered", agent_id="1001")


async def test_vip_caller_goes_before_an_earlier_standard_caller(tmp_path: Path) -> None:
    # One agent (Heidi: rings 2 s, talks 5 s). A takes her; then B
    # (standard) and C (VIP, on the VIP number) wait; C is served first.
    center = center_file(tmp_path, [{"id": "1007", "name": "Heidi",
                                     "skills": {"support": 5}}])
    async with stack(tmp_path, center) as s:
        await s.call(patience=90, number="+33600000001", name="A")
        await s.log.wait("routing.answered", agent_id="1007")
        await s.call(patience=90, number="+33600000002", name="B")
        (queued_b,) = (await s.log.wait("routing.task_queued", vip=False, count=2))[1:]
        await s.call(patience=90, number="+33600000003", name="C", did="0140000099")
        (queued_c,) = await s.log.wait("routing.task_queued", vip=True)
        assigned = await s.log.wait("routing.assigned", count=3, within=40.0)
        order = [entry["call_id"] for entry in assigned]
        assert order[1:] == [queued_c["call_id"], queued_b["call_id"]]
        assert queued_c["priority"] == "vip"


async def test_a_caller_who_hangs_up_while_ringing_frees_the_agent(tmp_path: Path) -> None:
    center = center_file(tmp_path, [{"id": "1003", "name": "Dave",
                                     "skills": {"support": 5}}],
                         support={"skills": {"support": 1}, "numbers": ["0140000001"],
                                  "ring_timeout_seconds": 60, "wrap_up_seconds": 1})
    async with stack(tmp_path, center) as s:
        await s.call(patience=4)
        await s.log.wait("routing.assigned", agent_id="1003")
        (ended,) = await s.log.wait("call.ended", within=20.0)
        assert ended["outcome"] == "abandoned"
        # Dave is free again: the next caller is offered to him at once.
        await s.call(patience=30)
        await s.log.wait("routing.assigned", agent_id="1003", count=2)


async def test_relaxation_lets_a_lower_level_agent_take_a_waiting_call(
        tmp_path: Path) -> None:
    center = center_file(
        tmp_path, [{"id": "1001", "name": "Bob", "skills": {"support": 3}}],
        support={"skills": {"support": 6}, "numbers": ["0140000001"],
                 "relaxation": [{"after": 4, "skill": "support", "any_level": True}]})
    async with stack(tmp_path, center) as s:
        await s.call(patience=60)
        (queued,) = await s.log.wait("routing.task_queued")
        (assigned,) = await s.log.wait("routing.assigned", within=20.0)
        assert "relaxed" in assigned["rule"] or "any level" in assigned["rule"]
        assert _at(assigned) - _at(queued) >= 3.5


async def test_wrap_up_keeps_the_agent_off_calls_for_its_duration(tmp_path: Path) -> None:
    center = center_file(
        tmp_path, [{"id": "1007", "name": "Heidi", "skills": {"support": 5}}],
        support={"skills": {"support": 1}, "numbers": ["0140000001"],
                 "wrap_up_seconds": 4})
    async with stack(tmp_path, center) as s:
        await s.call(patience=90)
        await s.log.wait("routing.answered", agent_id="1007")
        await s.call(patience=90)
        (first_end,) = await s.log.wait("call.ended", within=30.0)
        second = (await s.log.wait("routing.assigned", count=2, within=30.0))[1]
        assert _at(second) - _at(first_end) >= 3.5
