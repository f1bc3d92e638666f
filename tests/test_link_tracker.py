"""The AMI link and the call tracker together, over TCP on loopback: the
live model survives a dropped link. A call that ended while the link was
down is closed, one that started is picked up, one that went on is kept."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cti.calls.model import CallEnded, CallStarted, CallState
from cti.calls.tracker import Tracker
from cti.pbx import events as ev
from cti.pbx.link import AmiLink
from tests.amipeer import AmiPeer, core_show_channel, eventually
from tests.test_ami_link import newchannel


class Model:
    """The server's subscriber, reduced to the tracker and its changes."""

    def __init__(self) -> None:
        self.tracker = Tracker()
        self.changes: list[object] = []
        self.snapshots = 0

    def __call__(self, event: ev.PbxEvent) -> None:
        if isinstance(event, ev.ChannelsSnapshot):
            self.snapshots += 1
        self.changes += self.tracker.apply(event)

    def live(self) -> set[str]:
        return {call.id for call in self.tracker.calls.values()
                if call.state is not CallState.ENDED}


@pytest.fixture
async def peer() -> AsyncIterator[AmiPeer]:
    async with AmiPeer() as running:
        yield running


async def test_calls_that_ended_or_started_during_an_outage_are_resynced(
        peer: AmiPeer) -> None:
    model = Model()
    link = AmiLink("127.0.0.1", peer.port, "cti", "cti-secret", subscriber=model,
                   action_timeout=0.5, connect_timeout=0.5, backoff_initial=0.02,
                   backoff_max=0.05)
    await link.start()
    try:
        await eventually(lambda: model.snapshots == 1)
        await peer.push_event(newchannel("PJSIP/trunk-00000001", "1700000000.1"))
        await peer.push_event(newchannel("PJSIP/trunk-00000002", "1700000000.2",
                                         caller_name="Bruno Petit"))
        await eventually(lambda: model.live() == {"1700000000.1", "1700000000.2"})

        # While the link is down, call .1 hangs up and call .3 arrives;
        # call .2 goes on.
        peer.channels[:] = [
            core_show_channel("PJSIP/trunk-00000002", "1700000000.2",
                              caller_name="Bruno Petit"),
            core_show_channel("PJSIP/trunk-00000003", "1700000000.3",
                              caller_name="Chloe Martin"),
        ]
        await peer.drop()
        await eventually(lambda: model.snapshots == 2)

        assert model.live() == {"1700000000.2", "1700000000.3"}
        ended = [c.record.call for c in model.changes if isinstance(c, CallEnded)]
        started = [c.call for c in model.changes if isinstance(c, CallStarted)]
        assert ended == ["1700000000.1"]
        assert started == ["1700000000.1", "1700000000.2", "1700000000.3"]
        assert model.tracker.calls["1700000000.3"].caller_name == "Chloe Martin"
        assert link.reconnects == 1
    finally:
        await link.close()
