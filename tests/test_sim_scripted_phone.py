"""A simulated phone with a script plays it one call at a time (busy, then
answers), however many priorities its dialplan runs per call."""

from __future__ import annotations

import pytest

from cti.sim import start_sim
from cti.sim.population import RECORDED_AGENTS, Phone, Pickup, Population
from tests.ami_client import AmiClient

pytestmark = pytest.mark.timeout(30)


async def test_a_scripted_customer_is_busy_then_answers_then_keeps_its_pickup() -> None:
    phone = Phone("0611000020", "busy, then answers", ring_s=1, talk_s=1,
                  script=(Pickup.BUSY, Pickup.ANSWER), pickup=Pickup.CONGESTION)
    population = Population(agents={p.number: p for p in RECORDED_AGENTS},
                            customers={phone.number: phone})
    sim = await start_sim(port=0, secret="s3cret", speed=10.0, population=population)
    ami = await AmiClient.connect(sim.port)
    try:
        await ami.login(secret="s3cret")
        reasons = []
        # the +33 form is the same phone: it shares the count
        for number in ("0611000020", "+33611000020", "0611000020"):
            since = len(ami.received)
            action_id = ami.send("Originate", ("Channel", f"Local/{number}@sim-customer"),
                                 ("Application", "Wait"), ("Data", "1"),
                                 ("Timeout", "10000"), ("Async", "true"))
            response = await ami.event("OriginateResponse", since=since, ActionID=action_id)
            reasons.append((response.get("Response"), response.get("Reason")))
        assert reasons == [("Failure", "5"), ("Success", "4"), ("Failure", "8")]
    finally:
        await ami.close()
        await sim.close()
