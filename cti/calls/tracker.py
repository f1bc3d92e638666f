"""The call tracker: folds typed PBX events into live channels and calls.

Pure and deterministic: no IO, no clock (every event carries its time), so
the same transcript always gives the same state and the same ended calls.
Channels are keyed by Asterisk `Uniqueid`, calls by `Linkedid`: a call keeps
its id through Local channels, bridges, redirects and transfers.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cti.calls.model import (
    CHANNEL_UP,
    Call,
    CallAgentChanged,
    CallChange,
    CallEnded,
    CallRecord,
    CallStarted,
    CallState,
    CallStateChanged,
    Channel,
    Direction,
    Outcome,
    interface_of,
    local_half,
)
from cti.pbx import events as ev


@dataclass(frozen=True, slots=True)
class DialplanContexts:
    """The `cti-*` context names of dialplans/cti.conf (configurable)."""

    inbound: str = "cti-inbound"
    wait: str = "cti-wait"
    connect: str = "cti-connect"
    callback: str = "cti-callback"
    callback_customer: str = "cti-callback-customer"


_TOMBSTONES = 20_000


class Tracker:
    """Live model of channels and calls, fed one typed event at a time."""

    def __init__(self, contexts: DialplanContexts | None = None) -> None:
        self.contexts = contexts or DialplanContexts()
        self.channels: dict[str, Channel] = {}
        self.calls: dict[str, Call] = {}
        self.bridges: dict[str, set[str]] = {}
        self._by_name: dict[str, str] = {}
        self._seq = 0
        # Unique ids of channels already gone: a late or duplicated event
        # about them must not bring a phantom back.
        self._gone: OrderedDict[str, None] = OrderedDict()

    # ------------------------------------------------------------ public

    def apply(self, event: ev.PbxEvent) -> list[CallChange]:
        changes: list[CallChange] = []
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event, changes)
        return changes

    def call_of(self, uniqueid: str) -> Call | None:
        channel = self.channels.get(uniqueid)
        return None if channel is None else self.calls.get(channel.call)

    # ------------------------------------------------------------ channels

    def _upsert(self, info: ev.ChannelInfo, at: float, changes: list[CallChange]) -> Channel | None:
        if info.uniqueid in self._gone:
            return None
        channel = self.channels.get(info.uniqueid)
        if channel is None:
            channel = Channel(
                uniqueid=info.uniqueid,
                call=info.linkedid,
                name=info.name,
                state=info.state,
                caller_number=info.caller_number,
                caller_name=info.caller_name,
                context=info.context,
                exten=info.exten,
                created_at=at,
                last_seen=at,
                ever_up=info.state == CHANNEL_UP,
            )
            self.channels[info.uniqueid] = channel
            self._by_name[info.name] = info.uniqueid
            self._attach(channel, at, changes)
            self._note_up(channel)
            return channel
        channel.last_seen = at
        channel.state = info.state
        if info.state == CHANNEL_UP and not channel.ever_up:
            channel.ever_up = True
            self._note_up(channel)
        channel.context = info.context or channel.context
        channel.exten = info.exten or channel.exten
        channel.caller_number = info.caller_number or channel.caller_number
        channel.caller_name = info.caller_name or channel.caller_name
        if info.name != channel.name:  # renamed (masquerade)
            self._by_name.pop(channel.name, None)
            self._by_name[info.name] = channel.uniqueid
            channel.name = info.name
        return channel

    def _note_up(self, channel: Channel) -> None:
        if channel.ever_up:
            call = self.calls.get(channel.call)
            if call is not None and call.origin == channel.uniqueid:
                call.origin_up = True

    def _attach(self, channel: Channel, at: float, changes: list[CallChange]) -> None:
        call = self.calls.get(channel.call)
        if call is None:
            call = Call(id=channel.call, started_at=at)
            self.calls[call.id] = call
            changes.append(CallStarted(at, call.id))
        call.channels.add(channel.uniqueid)
        if channel.uniqueid == call.id or call.origin is None:
            call.origin = channel.uniqueid
            if call.agent_leg is None:
                call.customer = channel.uniqueid
        # Local halves: pair `;2` with its `;1` by name (list answers and
        # late joins have no LocalBridge event).
        half = local_half(channel.name)
        if half is not None:
            other = self._by_name.get(channel.name[:-1] + ("1" if half == 2 else "2"))
            if other is not None and other in self.channels:
                channel.peer = other
                self.channels[other].peer = channel.uniqueid

    def _customer_side(self, call: Call, uniqueid: str) -> bool:
        if call.customer is None:
            return False
        if uniqueid == call.customer:
            return True
        customer = self.channels.get(call.customer)
        return customer is not None and customer.peer == uniqueid

    def _set_state(
        self, call: Call, state: CallState, at: float, changes: list[CallChange]
    ) -> None:
        if call.state is state or call.state is CallState.ENDED:
            return
        previous = call.state
        call.state = state
        changes.append(CallStateChanged(at, call.id, previous, state, call.agent))

    # ------------------------------------------------------------ handlers

    def _on_channel(self, event: ev.ChannelCreated | ev.ChannelStateChanged | ev.CallerIdChanged,
                    changes: list[CallChange]) -> None:
        channel = self._upsert(event.channel, event.at, changes)
        if channel is None:
            return
        call = self.calls[channel.call]
        if channel.uniqueid == call.customer:
            call.caller_number = call.caller_number if call.direction is Direction.CALLBACK \
                else channel.caller_number
            if call.direction is not Direction.CALLBACK:
                call.caller_name = channel.caller_name

    def _on_dialplan(self, event: ev.DialplanEntered, changes: list[CallChange]) -> None:
        channel = self._upsert(event.channel, event.at, changes)
        if channel is None:
            return
        call = self.calls[channel.call]
        contexts = self.contexts
        context = event.channel.context
        if channel.uniqueid == call.origin and context == contexts.callback:
            # Agent-first callback: the originated channel is the agent's
            # phone; the customer is the leg it dials (cti-callback).
            if call.direction is not Direction.CALLBACK:
                call.direction = Direction.CALLBACK
                call.agent_leg = channel.uniqueid
                call.customer = None
                call.caller_number = event.channel.exten or None
                call.caller_name = None
                call.agent = interface_of(channel.name)
            return
        if channel.uniqueid != call.customer:
            return
        if channel.uniqueid == call.origin and context == contexts.callback_customer \
                and call.direction is not Direction.CALLBACK:
            # Customer-first callback: the originated channel is the
            # customer's, answered; its extension is their E.164 number.
            call.direction = Direction.CALLBACK
            call.caller_number = event.channel.exten or None
            call.caller_name = None
            return
        if context == contexts.inbound and call.did is None:
            call.did = event.channel.exten
        if event.application == "AGI":
            self._set_state(call, CallState.IN_IVR, event.at, changes)
        elif context == contexts.wait:
            if call.wait_started_at is None:
                call.wait_started_at = event.at
            call.ringing_agent = None
            self._set_state(call, CallState.WAITING, event.at, changes)
        elif context == contexts.connect and _being_routed(call):
            call.ringing_agent = event.channel.exten
            self._set_state(call, CallState.CONNECTING, event.at, changes)

    def _on_variable(self, event: ev.VariableSet, changes: list[CallChange]) -> None:
        channel = self._upsert(event.channel, event.at, changes)
        if channel is None:
            return
        call = self.calls[channel.call]
        if self._customer_side(call, channel.uniqueid) or channel.uniqueid == call.agent_leg:
            call.variables[event.variable] = event.value

    def _on_user_event(self, event: ev.UserEventReceived | ev.DialplanStep,
                       changes: list[CallChange]) -> None:
        if event.channel is None:
            return
        channel = self._upsert(event.channel, event.at, changes)
        if channel is None:
            return
        if isinstance(event, ev.DialplanStep) and event.service:
            self.calls[channel.call].service = event.service

    def _on_hangup_request(self, event: ev.HangupRequested, changes: list[CallChange]) -> None:
        channel = self._upsert(event.channel, event.at, changes)
        if channel is None:
            return
        call = self.calls[channel.call]
        if call.first_request is None and self._customer_side(call, channel.uniqueid):
            call.first_request = (channel.uniqueid, event.soft)

    def _on_hangup(self, event: ev.ChannelHungUp, changes: list[CallChange]) -> None:
        channel = self.channels.get(event.channel.uniqueid)
        if channel is None:
            return
        self._remove_channel(channel, event.at, changes)

    def _remove_channel(self, channel: Channel, at: float, changes: list[CallChange]) -> None:
        self._leave_bridge(channel)
        del self.channels[channel.uniqueid]
        if self._by_name.get(channel.name) == channel.uniqueid:
            del self._by_name[channel.name]
        self._gone[channel.uniqueid] = None
        if len(self._gone) > _TOMBSTONES:
            self._gone.popitem(last=False)
        call = self.calls.get(channel.call)
        if call is None:
            return
        call.channels.discard(channel.uniqueid)
        if channel.uniqueid == call.customer and call.customer_hungup_at is None:
            call.customer_hungup_at = at
        if not call.channels:
            self._end(call, at, changes)

    def _on_local_pair(self, event: ev.LocalPaired, changes: list[CallChange]) -> None:
        one = self._upsert(event.one, event.at, changes)
        two = self._upsert(event.two, event.at, changes)
        if one is not None and two is not None:
            one.peer, two.peer = two.uniqueid, one.uniqueid

    def _on_dial_start(self, event: ev.DialStarted, changes: list[CallChange]) -> None:
        dest = self._upsert(event.dest, event.at, changes)
        if dest is None:
            return
        if event.caller is None:
            call = self.calls[dest.call]
            if dest.uniqueid == call.origin:
                # Dialled by an Originate: an outbound leg until it answers.
                call.originated = True
            return
        caller = self._upsert(event.caller, event.at, changes)
        if caller is None:
            return
        call = self.calls[caller.call]
        if caller.uniqueid == call.agent_leg and call.customer is None:
            call.customer = dest.uniqueid
        elif caller.uniqueid == call.customer and _being_routed(call):
            call.ringing_agent = interface_of(dest.name)
            self._set_state(call, CallState.CONNECTING, event.at, changes)

    def _on_dial_end(self, event: ev.DialEnded, changes: list[CallChange]) -> None:
        dest = self._upsert(event.dest, event.at, changes)
        if dest is None:
            return
        call = self.calls[dest.call]
        if event.caller is None and dest.uniqueid == call.origin and event.status != "ANSWER":
            call.originate_failed = True
        if event.caller is not None and event.caller.uniqueid == call.customer \
                and event.status != "ANSWER" and _being_routed(call):
            call.ringing_agent = None

    def _on_bridge_enter(self, event: ev.BridgeEntered, changes: list[CallChange]) -> None:
        channel = self._upsert(event.channel, event.at, changes)
        if channel is None:
            return
        if channel.bridge != event.bridge:
            self._leave_bridge(channel)
            self._seq += 1
            channel.bridge = event.bridge
            channel.bridged_seq = self._seq
            self.bridges.setdefault(event.bridge, set()).add(channel.uniqueid)
        self._evaluate_bridge(event.bridge, event.at, changes)

    def _on_bridge_leave(self, event: ev.BridgeLeft, changes: list[CallChange]) -> None:
        channel = self.channels.get(event.channel.uniqueid)
        if channel is None or channel.bridge != event.bridge:
            return
        self._leave_bridge(channel)

    def _leave_bridge(self, channel: Channel) -> None:
        if channel.bridge is None:
            return
        members = self.bridges.get(channel.bridge)
        if members is not None:
            members.discard(channel.uniqueid)
            if not members:
                del self.bridges[channel.bridge]
        channel.bridge = None

    def _evaluate_bridge(self, bridge: str, at: float, changes: list[CallChange]) -> None:
        """A customer bridged with anyone but their own Local half is
        talking to an agent; the latest arrival is the current agent."""
        members = self.bridges.get(bridge, set())
        for uniqueid in list(members):
            channel = self.channels.get(uniqueid)
            if channel is None:
                continue
            call = self.calls.get(channel.call)
            if call is None or call.customer != uniqueid:
                continue
            peers = [
                self.channels[p] for p in members
                if p not in (uniqueid, channel.peer) and p in self.channels
            ]
            if not peers:
                continue
            newest = max(peers, key=lambda c: c.bridged_seq)
            agent = interface_of(newest.name)
            if call.bridged_at is None:
                call.bridged_at = at
            elif call.agent is not None and agent != call.agent:
                call.transfers += 1
            if call.direction is not Direction.CALLBACK or call.agent is None:
                previous, call.agent = call.agent, agent
                if previous is not None and previous != agent:
                    # Before the state change: a listener learns who the
                    # caller talks with before it hears "talking" again.
                    changes.append(CallAgentChanged(at, call.id, previous, agent))
            call.ringing_agent = None
            self._set_state(call, CallState.TALKING, at, changes)

    def _on_hold(self, event: ev.HoldChanged | ev.MusicOnHoldChanged,
                 changes: list[CallChange]) -> None:
        channel = self._upsert(event.channel, event.at, changes)
        if channel is None:
            return
        call = self.calls[channel.call]
        held = event.on_hold if isinstance(event, ev.HoldChanged) else event.playing
        if isinstance(event, ev.HoldChanged):
            channel.on_hold = held
        else:
            channel.moh = held
        if call.state in (CallState.TALKING, CallState.ON_HOLD) and channel.bridge is not None:
            self._set_state(call, CallState.ON_HOLD if held else CallState.TALKING,
                            event.at, changes)

    def _on_queue_join(self, event: ev.QueueCallerJoined, changes: list[CallChange]) -> None:
        channel = self._upsert(event.channel, event.at, changes)
        if channel is None:
            return
        call = self.calls[channel.call]
        call.queue = event.queue
        if call.wait_started_at is None:
            call.wait_started_at = event.at
        self._set_state(call, CallState.WAITING, event.at, changes)

    def _on_queue_leave(self, event: ev.QueueCallerLeft, changes: list[CallChange]) -> None:
        """Out of Asterisk's queue (answered, abandoned, or timed out and on
        through the dialplan): no longer app_queue's to distribute."""
        channel = self._upsert(event.channel, event.at, changes)
        if channel is not None:
            self.calls[channel.call].queue = None

    def _on_queue_agent(self, event: ev.QueueAgentEvent, changes: list[CallChange]) -> None:
        if event.caller is None:
            return
        call = self.call_of(event.caller)
        if call is None or call.bridged_at is not None:
            return
        if event.kind is ev.QueueAgentKind.CALLED:
            call.ringing_agent = event.interface
            self._set_state(call, CallState.CONNECTING, event.at, changes)
        elif event.kind is ev.QueueAgentKind.RING_NO_ANSWER:
            call.ringing_agent = None
            self._set_state(call, CallState.WAITING, event.at, changes)

    def _on_originate(self, event: ev.OriginateResult, changes: list[CallChange]) -> None:
        if event.success:
            if event.uniqueid is not None:
                call = self.call_of(event.uniqueid)
                if call is not None:
                    call.originated = True
            return
        # A failed originate names the dial string, not a channel
        # (finding 2); the channel may already be gone or arrive later.
        if event.uniqueid is not None:
            call = self.call_of(event.uniqueid)
            if call is not None:
                call.originated = call.originate_failed = True
                return
        for channel in self.channels.values():
            if interface_of(channel.name) == event.channel and not channel.ever_up:
                call = self.calls[channel.call]
                if channel.uniqueid == call.origin:
                    call.originated = call.originate_failed = True

    def _on_snapshot(self, event: ev.ChannelsSnapshot, changes: list[CallChange]) -> None:
        """Resync: the PBX's complete list of channels is the truth. Channels
        we hold that it does not list (and that we have not heard of since
        the list was asked for) ended while we were not looking."""
        listed = {item.channel.uniqueid for item in event.channels}
        for stale in list(self.channels.values()):
            if stale.uniqueid not in listed and stale.last_seen <= event.started_at \
                    and stale.uniqueid in self.channels:
                self._remove_channel(stale, event.at, changes)
        for item in event.channels:
            fresh = self._upsert(item.channel, event.at, changes)
            if fresh is None:
                continue
            if item.bridge and fresh.bridge != item.bridge:
                self._seq += 1
                self._leave_bridge(fresh)
                fresh.bridge = item.bridge
                fresh.bridged_seq = self._seq
                self.bridges.setdefault(item.bridge, set()).add(fresh.uniqueid)
        for item in event.channels:
            channel = self.channels.get(item.channel.uniqueid)
            if channel is None:
                continue
            call = self.calls[channel.call]
            if channel.uniqueid != call.customer:
                continue
            if call.caller_number is None and call.direction is not Direction.CALLBACK:
                # A call first seen in the list: it has the caller of its
                # customer channel and started when that channel did.
                call.caller_number = channel.caller_number
                call.caller_name = channel.caller_name
                if item.seconds_up is not None:
                    call.started_at = min(call.started_at, event.at - item.seconds_up)
            if call.state is not CallState.RINGING:
                continue
            if item.bridge:
                self._evaluate_bridge(item.bridge, event.at, changes)
            elif item.channel.context == self.contexts.wait or item.application == "Queue":
                call.wait_started_at = event.at - (item.seconds_up or 0)
                self._set_state(call, CallState.WAITING, event.at, changes)

    def _on_booted(self, event: ev.PbxBooted, changes: list[CallChange]) -> None:
        """FullyBooted tells how long Asterisk has been up: a channel we last
        heard of before this Asterisk started cannot exist any more (its
        hang-up was lost with the restart)."""
        if event.uptime is None:
            return
        booted_at = event.at - event.uptime
        for stale in list(self.channels.values()):
            if stale.last_seen < booted_at and stale.uniqueid in self.channels:
                self._remove_channel(stale, event.at, changes)

    # ------------------------------------------------------------ end

    def _end(self, call: Call, at: float, changes: list[CallChange]) -> None:
        del self.calls[call.id]
        previous = call.state
        call.state = CallState.ENDED
        changes.append(CallStateChanged(at, call.id, previous, CallState.ENDED, call.agent))
        changes.append(CallEnded(at, self.record(call, at)))

    def record(self, call: Call, at: float) -> CallRecord:
        by_caller = self._hung_up_by_caller(call)
        if call.bridged_at is not None:
            outcome = Outcome.ANSWERED
        elif call.originated and (call.originate_failed or not call.origin_up):
            outcome = Outcome.FAILED
        elif by_caller:
            outcome = Outcome.ABANDONED
        else:
            outcome = Outcome.UNANSWERED
        wait_ms = talk_ms = None
        if call.bridged_at is not None:
            if call.wait_started_at is not None:
                wait_ms = round((call.bridged_at - call.wait_started_at) * 1000)
            end = call.customer_hungup_at if call.customer_hungup_at is not None else at
            talk_ms = round((end - call.bridged_at) * 1000)
        return CallRecord(
            call=call.id,
            direction=call.direction if not call.originated or call.direction
            is Direction.CALLBACK or call.did is not None else Direction.OUTBOUND,
            caller_number=call.caller_number,
            caller_name=call.caller_name,
            did=call.did,
            service=call.service,
            outcome=outcome,
            agent=call.agent if call.bridged_at is not None else None,
            wait_ms=wait_ms,
            talk_ms=talk_ms,
            transfers=call.transfers,
            started_at=call.started_at,
            ended_at=at,
            hung_up_by_caller=by_caller,
        )

    @staticmethod
    def _hung_up_by_caller(call: Call) -> bool:
        """Finding 18: the order of Hangup events does not say who ended the
        call; the first hang-up request on the customer side does. A hang-up
        queued from the far end (HangupRequest) on the customer's channel,
        or an explicit one (SoftHangupRequest) on the phone half of a Local
        customer channel, is the caller's. A SoftHangupRequest on the
        customer's channel itself is the PBX's (AMI Hangup, dialplan)."""
        if call.first_request is None:
            return False
        uniqueid, soft = call.first_request
        if uniqueid == call.customer:
            return not soft
        return soft


def _being_routed(call: Call) -> bool:
    """The caller is not with an agent: never bridged yet, or bridged before
    and sent back to the waiting context by the server (a transfer to a
    service), where it is offered again. A caller moved straight from one
    agent to another (blind or attended transfer) stays TALKING."""
    return call.bridged_at is None or call.state in (CallState.WAITING, CallState.CONNECTING)


_Handler = Callable[[Tracker, Any, list[CallChange]], None]

_HANDLERS: dict[type, _Handler] = {
    ev.ChannelCreated: Tracker._on_channel,
    ev.ChannelStateChanged: Tracker._on_channel,
    ev.CallerIdChanged: Tracker._on_channel,
    ev.DialplanEntered: Tracker._on_dialplan,
    ev.VariableSet: Tracker._on_variable,
    ev.UserEventReceived: Tracker._on_user_event,
    ev.DialplanStep: Tracker._on_user_event,
    ev.HangupRequested: Tracker._on_hangup_request,
    ev.ChannelHungUp: Tracker._on_hangup,
    ev.LocalPaired: Tracker._on_local_pair,
    ev.DialStarted: Tracker._on_dial_start,
    ev.DialEnded: Tracker._on_dial_end,
    ev.BridgeEntered: Tracker._on_bridge_enter,
    ev.BridgeLeft: Tracker._on_bridge_leave,
    ev.HoldChanged: Tracker._on_hold,
    ev.MusicOnHoldChanged: Tracker._on_hold,
    ev.QueueCallerJoined: Tracker._on_queue_join,
    ev.QueueCallerLeft: Tracker._on_queue_leave,
    ev.QueueAgentEvent: Tracker._on_queue_agent,
    ev.OriginateResult: Tracker._on_originate,
    ev.ChannelsSnapshot: Tracker._on_snapshot,
    ev.PbxBooted: Tracker._on_booted,
}
