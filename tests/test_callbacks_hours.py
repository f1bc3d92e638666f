"""The callback API with a service's business hours (center file `hours`)
against a real server, redis-server and the simulated PBX, its clock set to
a known instant: inside hours ASAP is promised; outside them it is refused
with slots that all start in the next opening (in Paris time, across the
DST change), and a holiday is skipped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.callback_floor import floor

pytestmark = pytest.mark.timeout(60)

PARIS = ZoneInfo("Europe/Paris")
BOB = [{"id": "1001", "skills": {"support": 5}}]       # logged in at start
SLOW = {"CTI_CALLBACKS_POLL_SECONDS": "60"}              # the dispatcher stays idle
HOURS = {"timezone": "Europe/Paris",
         "weekly": {"mon-fri": "08:00-18:00", "sat": "09:00-12:00"},
         "holidays": ["2026-05-01"]}


def at(moment: datetime) -> Callable[[], float]:
    offset = moment.timestamp() - time.time()
    return lambda: time.time() + offset


def starts(slots: list[dict[str, Any]]) -> list[datetime]:
    return [datetime.fromisoformat(s["start"]) for s in slots]


async def test_inside_business_hours_asap_is_promised(tmp_path: Path) -> None:
    tuesday = datetime(2026, 3, 10, 10, 0, tzinfo=PARIS)
    async with floor(tmp_path, BOB, env=SLOW, clock=at(tuesday), hours=HOURS) as f:
        status, offer = await f.get("/api/v1/callbacks/slots?topic=support")
        assert status == 200 and offer["asap"] is True
        assert starts(offer["slots"])[0] == datetime(2026, 3, 10, 10, 30, tzinfo=PARIS)
        status, body = await f.post({"number": "0611223344", "topic": "support"})
        assert status == 202 and body["asap"] is True


async def test_outside_business_hours_asap_gets_409_with_slots_of_the_next_opening(
        tmp_path: Path) -> None:
    # Saturday noon, closing time; Paris moves to summer time that night.
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=PARIS)
    async with floor(tmp_path, BOB, env=SLOW, clock=at(saturday), hours=HOURS) as f:
        _, offer = await f.get("/api/v1/callbacks/slots?topic=support")
        assert offer["asap"] is False and offer["expected_at"] is None
        status, answer = await f.post({"number": "0611223344", "topic": "support"})
        assert status == 409 and answer["error"] == "asap_unavailable"
        assert answer["slots"] == offer["slots"] and await f.stored() == []
        # eight half hours from Monday 08:00 summer time (06:00 UTC, not 07:00)
        monday = datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
        assert starts(offer["slots"]) == [monday + timedelta(minutes=30 * i)
                                          for i in range(8)]
        assert offer["slots"][0]["start"] == "2026-03-30T06:00:00Z"
        status, body = await f.post({"number": "0611223344", "when": offer["slots"][0]["start"]})
        assert status == 202 and body["asap"] is False
        assert body["expected_at"] == "2026-03-30T06:00:00Z"


async def test_a_holiday_gets_no_slot(tmp_path: Path) -> None:
    thursday = datetime(2026, 4, 30, 19, 0, tzinfo=PARIS)   # Friday 1 May is a holiday
    async with floor(tmp_path, BOB, env=SLOW, clock=at(thursday), hours=HOURS) as f:
        _, offer = await f.get("/api/v1/callbacks/slots?topic=support")
        local = [start.astimezone(PARIS) for start in starts(offer["slots"])]
        saturday = datetime(2026, 5, 2, 9, 0, tzinfo=PARIS)
        monday = datetime(2026, 5, 4, 8, 0, tzinfo=PARIS)
        assert local == [saturday + timedelta(minutes=30 * i) for i in range(6)] + [
            monday, monday + timedelta(minutes=30)]
        status, answer = await f.post({"number": "0611223344",
                                       "when": "2026-05-01T10:00:00+02:00"})
        assert status == 422 and answer["fields"][0]["field"] == "when"


async def test_a_callback_due_while_closed_waits_for_the_opening_and_is_not_dialled(
        tmp_path: Path) -> None:
    """A retry (or a request made just before closing) that falls due at
    night is not dialled: the dispatcher moves it to the next opening,
    keeping its place."""
    from cti.callbacks import CallbackFeature
    from cti.callbacks.models import Callback, Status

    saturday = datetime(2026, 3, 28, 12, 30, tzinfo=PARIS)   # just closed
    fast = {"CTI_CALLBACKS_POLL_SECONDS": "0.2"}
    async with floor(tmp_path, BOB, env=fast, clock=at(saturday), hours=HOURS) as f:
        feature = next(x for x in f.server.features if isinstance(x, CallbackFeature))
        now = f.server.clock()
        callback = Callback(id="cb0123456789abcdef0123", number="+33611223344",
                            service="support", requested_at=now - 3600,
                            due_at=now - 5, expected_at=now - 5, enqueued_at=now - 3600,
                            status=Status.RETRY)
        assert (await feature.store.accept(callback)).created
        monday = datetime(2026, 3, 30, 6, 0, tzinfo=UTC).timestamp()

        async def deferred() -> bool:
            stored = await feature.store.get(callback.id)
            return stored is not None and stored.due_at == monday

        async with asyncio.timeout(10):
            while not await deferred():
                await asyncio.sleep(0.1)
        stored = await feature.store.get(callback.id)
        assert stored is not None and stored.status is Status.RETRY
        assert stored.enqueued_at == callback.enqueued_at and stored.attempts == []
        assert f.server.switchboard.decisions == 0            # nobody was offered it
        assert f.server.switchboard.agents["1001"].state.value == "available"
