"""app_queue in the simulated PBX against the real Asterisk 22 recordings
04 (VIP priority) and 05 (abandon, ring-no-answer, dynamic members), driven
with the actions of `driver/scenarios.py` in the same order."""

from __future__ import annotations

from tests.test_sim_conformance import Run, play

CAROL = "Local/1002@sim-agent"
HEIDI = "Local/1007@sim-agent"


async def s04(run: Run) -> None:
    await run.drv.action("QueuePause", ("Queue", "sales"), ("Interface", CAROL),
                         ("Paused", "true"), ("Reason", "briefing"))
    since = len(run.rec.received)
    standard = await run.caller("90", "queue-inbound", "sales", '"Bruno Standard" <+33611111111>')
    await run.rec.event("QueueCallerJoin", since=since, Channel=standard)
    vip = await run.caller("90", "queue-inbound", "sales", '"Victor VIP" <+33699999910>',
                           "CTI_VIP=1")
    await run.rec.event("QueueCallerJoin", since=since, Channel=vip)
    await run.sleep(1.0)
    await run.drv.action("QueueStatus", ("Queue", "sales"))
    await run.drv.action("QueuePause", ("Queue", "sales"), ("Interface", CAROL),
                         ("Paused", "false"))
    await run.rec.event("AgentConnect", since=since, within=30)
    await run.gone(vip, within=40)
    await run.rec.event("AgentConnect", since=since, within=30, Channel=standard)
    await run.gone(standard, within=40)


async def test_vip_is_served_first_when_the_agent_unpauses_as_in_recording_04() -> None:
    await play("04-queue-vip-priority", s04)


async def s05(run: Run) -> None:
    await run.drv.action("QueueAdd", ("Queue", "helpdesk"), ("Interface", HEIDI),
                         ("Penalty", "2"), ("Paused", "false"), ("MemberName", "Heidi Blanc"),
                         ("StateInterface", HEIDI))
    await run.drv.action("QueuePause", ("Queue", "helpdesk"), ("Interface", HEIDI),
                         ("Paused", "true"), ("Reason", "lunch"))
    since = len(run.rec.received)
    caller = await run.caller("12", "queue-inbound", "helpdesk",
                              '"Chloe Impatiente" <+33622222222>')
    await run.rec.event("QueueCallerAbandon", since=since, within=30)
    await run.gone(caller)
    await run.sleep(1.0)
    await run.drv.action("QueuePenalty", ("Queue", "helpdesk"), ("Interface", HEIDI),
                         ("Penalty", "0"))
    await run.drv.action("QueuePause", ("Queue", "helpdesk"), ("Interface", HEIDI),
                         ("Paused", "false"))
    since = len(run.rec.received)
    second = await run.caller("60", "queue-inbound", "helpdesk", '"Paul Patient" <+33633333333>')
    await run.rec.event("AgentConnect", since=since, within=30)
    await run.gone(second)
    await run.sleep(1.0)
    removed = await run.drv.action("QueueRemove", ("Queue", "helpdesk"), ("Interface", HEIDI))
    assert removed.get("Message") == "Removed interface from queue"
    again = await run.drv.action("QueueRemove", ("Queue", "helpdesk"), ("Interface", HEIDI))
    assert (again.response, again.get("Message")) == (
        "Error", "Unable to remove interface: Not there")
    unknown = await run.drv.action("QueuePause", ("Queue", "nosuchqueue"),
                                   ("Interface", HEIDI), ("Paused", "true"))
    assert (unknown.response, unknown.get("Message")) == ("Error", "Interface not found")


async def test_abandon_ring_no_answer_and_dynamic_member_match_recording_05() -> None:
    await play("05-queue-abandon-rna-dynamic-members", s05)
