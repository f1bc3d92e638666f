"""The AMI link against a fake Asterisk over real TCP (tests/amipeer.py).

Each panoramisk 1.4 defect (PANORAMISK.md, numbers in the test docstrings)
has a test here that fails on plain panoramisk; the rest prove the link's
own promises: resync after every reconnect, one log line per state change,
nothing left running after close().
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import panoramisk.utils
import pytest
from structlog.testing import capture_logs

from cti.pbx import events as ev
from cti.pbx.actions import AmiAction
from cti.pbx.commands import (
    Hangup,
    Originate,
    Ping,
    QueueAdd,
    Redirect,
    Status,
)
from cti.pbx.errors import (
    AmiActionFailed,
    AmiDisconnected,
    AmiLoginFailed,
    AmiTimeout,
)
from cti.pbx.link import AmiLink, LinkState
from cti.pbx.wire import AmiMessage
from tests.amipeer import (
    DEFAULT_ANSWERS,
    AmiPeer,
    AmiSession,
    Replies,
    core_show_channel,
    encode,
    eventually,
    queue_member,
)

CALLER = "Local/60@sim-caller-00000000;1"
REDIRECT = Redirect(CALLER, "cti-connect", "1001").to_action()


class Inbox:
    """A subscriber that keeps what it receives."""

    def __init__(self) -> None:
        self.events: list[ev.PbxEvent] = []

    def __call__(self, event: ev.PbxEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def peer() -> AsyncIterator[AmiPeer]:
    async with AmiPeer() as running:
        yield running


LinkFactory = Callable[..., AmiLink]


@pytest.fixture
async def make_link(peer: AmiPeer) -> AsyncIterator[LinkFactory]:
    """Links with short timeouts; all closed (before the peer) at the end."""
    links: list[AmiLink] = []

    def make(subscriber: Any = None, **options: Any) -> AmiLink:
        settings: dict[str, Any] = {
            "action_timeout": 0.5, "connect_timeout": 0.5, "ping_interval": 5.0,
            "pong_timeout": 0.3, "backoff_initial": 0.02, "backoff_max": 0.05,
        }
        settings.update(options)
        secret = settings.pop("secret", "cti-secret")
        link = AmiLink("127.0.0.1", peer.port, "cti", secret,
                       subscriber=subscriber or Inbox(), **settings)
        links.append(link)
        return link

    yield make
    for link in links:
        await link.close()


def names(logs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [entry["event"] for entry in logs if str(entry["event"]).startswith("ami.")]


def newchannel(channel: str, uniqueid: str, caller_name: str = "Alice Dupont") -> list[
        tuple[str, str]]:
    return [("Event", "Newchannel"), ("Privilege", "call,all"), ("Channel", channel),
            ("ChannelState", "0"), ("ChannelStateDesc", "Down"),
            ("CallerIDNum", "+33612345678"), ("CallerIDName", caller_name),
            ("ConnectedLineNum", "<unknown>"), ("ConnectedLineName", "<unknown>"),
            ("Language", "en"), ("AccountCode", ""), ("Context", "cti-inbound"),
            ("Exten", "0140000001"), ("Priority", "1"), ("Uniqueid", uniqueid),
            ("Linkedid", uniqueid)]


# -- login (defects 6, 10, 11) ------------------------------------------------


async def test_start_returns_only_after_login_is_confirmed(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    """Defect 11: panoramisk's connect() returns when TCP is up; a Message
    answers '' for a misspelt header."""
    peer.login_delay = 0.2
    link = make_link()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await link.start()
    assert loop.time() - started >= 0.2
    assert link.connected and link.state is LinkState.CONNECTED
    answer = await link.send(Ping().to_action())
    assert answer[0].get("Ping") == "Pong"
    assert answer[0].get("Pnig") is None


async def test_bad_secret_raises_login_failed_and_stops(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    """Defect 6: panoramisk retries a bad secret forever, silently."""
    link = make_link(secret="wrong-secret")
    with pytest.raises(AmiLoginFailed, match="Authentication failed") as caught:
        await link.start()
    assert caught.value.code == "ami_login_failed"
    assert "wrong-secret" not in str(caught.value)
    assert link.state is LinkState.CLOSED
    await asyncio.sleep(0.3)  # many backoff periods
    assert peer.logins == 1


async def test_refused_first_connection_raises_and_does_not_retry(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    """Defect 10: panoramisk's first connect() both raises and retries."""
    await peer.stop_listening()
    link = make_link()
    with pytest.raises(AmiDisconnected, match="cannot connect"):
        await link.start()
    await peer.listen()
    await asyncio.sleep(0.3)
    assert peer.connections == 0
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("ami-")]


async def test_login_refused_on_reconnect_stops_and_reports(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    link = make_link(max_login_failures=3)
    await link.start()
    peer.secret = "rotated"
    with capture_logs() as logs:
        await peer.drop()
        await eventually(lambda: link.state is LinkState.FAILED)
        await asyncio.sleep(0.2)
    assert peer.logins == 1 + 3
    assert isinstance(link.failure, AmiLoginFailed)
    assert names(logs).count("ami.login_failed") == 1
    with pytest.raises(AmiDisconnected, match="failed"):
        await link.send(REDIRECT)


async def test_secret_never_logged(peer: AmiPeer, make_link: LinkFactory,
                                   caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-Zoë-42"
    peer.secret = secret
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        bad = make_link(secret="not-" + secret)
        with pytest.raises(AmiLoginFailed) as caught:
            await bad.start()
        link = make_link(secret=secret)
        await link.start()
        await peer.drop()
        await eventually(lambda: link.reconnects == 1 and link.connected)
        await link.close()
    text = " ".join([caplog.text, repr(logs), str(caught.value), repr(link), repr(bad)])
    assert secret not in text
    assert "ami.connected" in names(logs)


# -- actions (defects 1-5) ----------------------------------------------------


async def test_action_while_disconnected_fails_fast(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    """Defect 5: panoramisk raises AttributeError before the first
    connection and hangs forever after a drop."""
    link = make_link()
    with pytest.raises(AmiDisconnected, match="Redirect"):
        await link.send(REDIRECT)
    await link.start()
    await peer.stop_listening()
    await peer.drop()
    await eventually(lambda: link.state is LinkState.RECONNECTING)
    async with asyncio.timeout(0.05):
        with pytest.raises(AmiDisconnected) as caught:
            await link.send(REDIRECT)
    assert caught.value.code == "ami_disconnected"


async def test_unanswered_action_times_out_naming_the_action(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    link = make_link()
    await link.start()
    peer.silence("Redirect")
    with pytest.raises(AmiTimeout, match=r"Redirect got no answer within 0\.2 s"):
        await link.send(REDIRECT, within=0.2)
    assert link.connected
    assert (await link.send(Ping().to_action()))[0].get("Ping") == "Pong"


async def test_redirect_in_flight_during_drop_is_not_resent_after_reconnect(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    """Defect 1: panoramisk re-sends unanswered actions on the next
    FullyBooted (the peer sends one after each login, like Asterisk)."""
    inbox = Inbox()
    link = make_link(inbox)
    await link.start()
    peer.silence("Redirect")
    in_flight = asyncio.create_task(link.send(REDIRECT))
    await eventually(lambda: len(peer.received("Redirect")) == 1)
    await peer.drop()
    with pytest.raises(AmiDisconnected):
        await in_flight
    await eventually(lambda: link.reconnects == 1 and link.connected)
    await eventually(lambda: len(inbox.of(ev.PbxBooted)) == 2)
    peer.restore("Redirect")
    await link.send(Ping().to_action())
    await asyncio.sleep(0.05)
    assert len(peer.received("Redirect")) == 1


async def test_close_fails_in_flight_actions(peer: AmiPeer, make_link: LinkFactory) -> None:
    link = make_link()
    await link.start()
    peer.silence("Hangup")
    in_flight = asyncio.create_task(link.send(Hangup(CALLER, 16).to_action()))
    await eventually(lambda: len(peer.received("Hangup")) == 1)
    await link.close()
    with pytest.raises(AmiDisconnected, match="Hangup"):
        await in_flight


async def test_sync_originate_success_keeps_connection(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    """Defect 2: a sync Originate answer without `Async` made panoramisk
    raise KeyError inside data_received and drop the connection."""
    link = make_link()
    await link.start()
    sync = Originate("Local/1001@sim-agent", "cti-callback", "0611223344",
                     asynchronous=False, timeout_ms=1000).to_action()
    assert dict(sync.fields)["Async"] == "false"
    answer = await link.send(sync)
    assert answer[0].get("Message") == "Originate successfully queued"
    bare = AmiAction("Originate", tuple((k, v) for k, v in sync.fields if k != "Async"))
    answer = await link.send(bare)
    assert answer[0].response == "Success"
    assert (await link.send(Ping().to_action()))[0].get("Ping") == "Pong"
    assert link.connected and peer.connections == 1


async def test_async_originate_with_events_off_resolves(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    """Defect 3: panoramisk waits for an OriginateResponse that Asterisk
    sends only to events-on sessions. Here the answer is the response; the
    OriginateResponse, when it comes, is an event for the subscriber."""
    inbox = Inbox()
    link = make_link(inbox)
    await link.start()
    action = Originate("Local/1001@sim-agent", "cti-callback", "0611223344",
                       channel_id="cti-cb-42-agent").to_action()
    async with asyncio.timeout(0.4):
        answer = await link.send(action)
    action_id = answer[0].action_id
    assert action_id is not None and answer[0].response == "Success"
    await peer.push_event([("Event", "OriginateResponse"), ("Privilege", "call,all"),
                           ("ActionID", action_id), ("Response", "Success"),
                           ("Channel", "Local/1001@sim-agent-00000004;1"),
                           ("Context", "cti-callback"), ("Exten", "0611223344"),
                           ("Reason", "4"), ("Uniqueid", "cti-cb-42-agent")])
    await eventually(lambda: bool(inbox.of(ev.OriginateResult)))
    (result,) = inbox.of(ev.OriginateResult)
    assert (result.action_id, result.success, result.reason) == (action_id, True, 4)


async def test_queueadd_resolves(peer: AmiPeer, make_link: LinkFactory) -> None:
    """Defect 4: panoramisk 1.4 waits forever after `Added interface to queue`."""
    link = make_link()
    await link.start()
    async with asyncio.timeout(0.4):
        answer = await link.send(QueueAdd("helpdesk", "Local/1007@sim-agent", penalty=2,
                                          member_name="Heidi Blanc").to_action())
    assert answer[0].get("Message") == "Added interface to queue"


async def test_list_action_answered_by_an_error_fails_at_once(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    """panoramisk with as_list=True never resolves an error answer."""
    link = make_link()
    await link.start()
    async with asyncio.timeout(0.4):
        with pytest.raises(AmiActionFailed, match="No such channel") as caught:
            await link.send(Status("Local/nosuch-00000000;1").to_action())
    assert caught.value.action == "Status"


async def test_list_action_returns_response_items_and_complete(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    peer.channels.append(core_show_channel(CALLER, "1795369787.66"))
    link = make_link()
    await link.start()
    answer = await link.send(Status().to_action())
    assert [m.response or m.event for m in answer] == ["Success", "Status", "StatusComplete"]
    assert answer[1].get("Channel") == CALLER


def test_sync_originate_gets_its_ring_time_on_top_of_the_action_timeout() -> None:
    link = AmiLink("127.0.0.1", 1, "cti", "x", subscriber=Inbox(), action_timeout=2.0)
    sync = Originate("PJSIP/1001", "c", "1", asynchronous=False, timeout_ms=20000)
    assert link.timeout_for(sync.to_action()) == 22.0
    assert link.timeout_for(Originate("PJSIP/1001", "c", "1").to_action()) == 2.0


# -- events (defects 7, 8) ----------------------------------------------------


async def test_utf8_split_across_reads_survives(peer: AmiPeer, make_link: LinkFactory) -> None:
    """Defect 7: panoramisk decodes each read alone with errors='ignore'
    ('Zoë Ærø' became 'Zo r')."""
    inbox = Inbox()
    link = make_link(inbox)
    await link.start()
    data = encode(newchannel(CALLER, "1795369800.1", caller_name="Zoë Ærø"))
    cut = data.index("ë".encode()) + 1
    await peer.push_event(data, split_at=cut)
    await eventually(lambda: bool(inbox.of(ev.ChannelCreated)))
    (created,) = inbox.of(ev.ChannelCreated)
    assert created.channel.caller_name == "Zoë Ærø"


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_raising_subscriber_does_not_close_link(
        peer: AmiPeer, make_link: LinkFactory, kind: str) -> None:
    """Defect 8: a raising sync handler closed panoramisk's connection and
    lost the rest of the read; async handlers' errors were never seen."""
    seen: list[ev.PbxEvent] = []

    def sync_subscriber(event: ev.PbxEvent) -> None:
        if isinstance(event, ev.UserEventReceived):
            raise RuntimeError("subscriber bug")
        seen.append(event)

    async def async_subscriber(event: ev.PbxEvent) -> None:
        await asyncio.sleep(0)
        sync_subscriber(event)

    link = make_link(sync_subscriber if kind == "sync" else async_subscriber)
    await link.start()
    boom = [("Event", "UserEvent"), ("Privilege", "user,all"), ("UserEvent", "CTIBoom")]
    with capture_logs() as logs:
        # One write, so one read: the event after the failing one must survive.
        await peer.push_event(encode(boom) + encode(newchannel(CALLER, "1795369800.2")))
        await eventually(lambda: any(isinstance(e, ev.ChannelCreated) for e in seen))
    assert link.connected and peer.connections == 1
    assert link.subscriber_failures == 1
    (failure,) = [entry for entry in logs if entry["event"] == "ami.subscriber_failed"]
    assert failure["pbx_event"] == "UserEventReceived"
    assert failure["log_level"] == "error"


async def test_full_event_queue_drops_counts_and_resyncs(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    inbox = Inbox()
    gate = asyncio.Event()

    async def slow(event: ev.PbxEvent) -> None:
        if isinstance(event, ev.ChannelCreated):
            await gate.wait()
        inbox(event)

    link = make_link(slow, queue_size=2)
    await link.start()
    await eventually(lambda: bool(inbox.of(ev.DeviceStatesSnapshot)))
    with capture_logs() as logs:
        await peer.push_event(b"".join(encode(newchannel(f"PJSIP/10{n}-1", f"1.{n}"))
                                       for n in range(8)))
        await eventually(lambda: link.events_dropped > 0)
        gate.set()
        await eventually(lambda: len(inbox.of(ev.ChannelsSnapshot)) == 2)
    assert link.events_received == 1 + 8  # FullyBooted and the Newchannels
    assert names(logs).count("ami.events_dropped") == 1
    assert link.connected and peer.connections == 1


# -- liveness and reconnection (defects 9, 10) --------------------------------


async def test_half_open_connection_is_detected(peer: AmiPeer, make_link: LinkFactory) -> None:
    """Defect 9: panoramisk pings but never checks the Pong, and truncates
    its intervals to whole seconds."""
    inbox = Inbox()
    link = make_link(inbox, ping_interval=0.1, pong_timeout=0.15)
    await link.start()
    await eventually(lambda: bool(inbox.of(ev.DeviceStatesSnapshot)))  # resync done
    with capture_logs() as logs:
        peer.freeze()
        await eventually(lambda: peer.connections == 2 and link.connected, within=1.5)
    assert "ami.pong_missed" in names(logs)
    assert link.reconnects == 1
    await eventually(lambda: len(peer.received("Ping")) >= 2)


async def test_dropped_connection_is_reconnected_and_resynced(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    peer.channels.append(core_show_channel(CALLER, "1795369787.66"))
    peer.queue_params.append([("Queue", "support"), ("Max", "0"), ("Strategy", "linear")])
    peer.queue_members.append(queue_member("support", "Local/1005@sim-agent", "Frank Moreau",
                                           status=2))
    peer.devices.append(("Local/1005@sim-agent", "INUSE"))
    inbox = Inbox()
    link = make_link(inbox)
    await link.start()
    await eventually(lambda: len(inbox.of(ev.DeviceStatesSnapshot)) == 1)
    assert [len(s.channels) for s in inbox.of(ev.ChannelsSnapshot)] == [1]

    peer.channels.append(core_show_channel("Local/1005@sim-agent-00000022;1", "1795369787.68",
                                           linkedid="1795369787.66"))
    with capture_logs() as logs:
        await peer.drop()
        await eventually(lambda: len(inbox.of(ev.DeviceStatesSnapshot)) == 2)
    snapshots = inbox.of(ev.ChannelsSnapshot)
    assert [len(s.channels) for s in snapshots] == [1, 2]
    assert snapshots[1].channels[1].channel.linkedid == "1795369787.66"
    assert link.reconnects == 1 and peer.connections == 2
    (members,) = inbox.of(ev.QueueMembersSnapshot)[1:]
    assert members.queues == ("support",)
    assert [(m.interface, m.status) for m in members.members] == [("Local/1005@sim-agent", 2)]
    assert [d.state for d in inbox.of(ev.DeviceStateChanged)] == ["INUSE", "INUSE"]
    assert names(logs) == ["ami.disconnected", "ami.reconnecting", "ami.connected"]


async def test_snapshot_started_at_is_when_the_request_was_sent(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    now = [100.0]

    def answer_later(session: AmiSession, action: AmiMessage) -> Replies | None:
        now[0] = 200.0  # the clock moves on while Asterisk builds the list
        return DEFAULT_ANSWERS["coreshowchannels"](session, action)  # type: ignore[return-value]

    peer.answer("CoreShowChannels", answer_later)
    peer.channels.append(core_show_channel(CALLER, "1795369787.66"))
    inbox = Inbox()
    link = make_link(inbox, clock=lambda: now[0])
    await link.start()
    await eventually(lambda: bool(inbox.of(ev.ChannelsSnapshot)))
    (snapshot,) = inbox.of(ev.ChannelsSnapshot)
    assert (snapshot.started_at, snapshot.at) == (100.0, 200.0)


async def test_reconnect_logs_once_per_outage(peer: AmiPeer, make_link: LinkFactory) -> None:
    link = make_link(backoff_initial=0.01, backoff_max=0.02)
    await link.start()
    with capture_logs() as logs:
        await peer.stop_listening()
        await peer.drop()
        await asyncio.sleep(0.3)  # a dozen refused attempts
        await peer.listen()
        await eventually(lambda: link.connected)
    assert names(logs) == ["ami.disconnected", "ami.reconnecting", "ami.connected"]


async def test_shutdown_event_ends_the_session_and_the_link_reconnects(
        peer: AmiPeer, make_link: LinkFactory) -> None:
    inbox = Inbox()
    link = make_link(inbox)
    await link.start()
    await peer.push_event([("Event", "Shutdown"), ("Privilege", "system,all"),
                           ("Shutdown", "Cleanly"), ("Restart", "True")])
    await eventually(lambda: link.reconnects == 1 and link.connected)
    assert inbox.of(ev.PbxShuttingDown)[0].restart is True


async def test_close_stops_reconnect_loop(peer: AmiPeer, make_link: LinkFactory) -> None:
    """Defect 10: panoramisk's close() does not stop its reconnect timer."""
    link = make_link()
    await link.start()
    await peer.stop_listening()
    await peer.drop()
    await eventually(lambda: link.state is LinkState.RECONNECTING)
    async with asyncio.timeout(0.2):
        await link.close()
    assert link.state is LinkState.CLOSED
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("ami-")]
    await peer.listen()
    await asyncio.sleep(0.3)
    assert peer.connections == 1
    with pytest.raises(AmiDisconnected):
        await link.send(REDIRECT)


# -- no panoramisk.testing (defect 12) -----------------------------------------


def test_panoramisk_testing_is_never_loaded() -> None:
    """Defect 12: importing panoramisk.testing sets the EOL of every
    Manager in the process to '\\n'."""
    assert "panoramisk.testing" not in sys.modules
    assert panoramisk.utils.EOL == "\r\n"
