"""app_queue of the simulator: the queues of the recordings'
`config/queues.conf`, the Queue() application (caller priority from
QUEUE_PRIO, linear and ringall strategies, ring timeout, retry, pause) and
the AMI actions QueueAdd, QueueRemove, QueuePause, QueuePenalty,
QueueStatus and QueueSummary, with the events and replies of recordings
04 and 05.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from cti.pbx.wire import AmiMessage
from cti.sim.ami_server import AmiServer, Session, respond
from cti.sim.channels import Channel, Pairs
from cti.sim.dial import parse_local, refuse_unknown
from cti.sim.runtime import Outcome, Runtime

CLEARED_ON_JOIN = ("ANSWEREDTIME", "ANSWEREDTIME_MS", "DIALEDTIME", "DIALEDTIME_MS",
                   "QUEUEWAIT", "QUEUEWAIT_MS")
CALLING_PRES = ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")
POLL_S = 1.0  # wait_our_turn checks for a free member once a second (recording 04)


@dataclass(eq=False)
class Member:
    interface: str
    name: str
    penalty: int = 0
    dynamic: bool = False
    paused: bool = False
    reason: str = ""
    calls: int = 0
    last_call: int = 0
    last_pause: int = 0
    login: int = field(default_factory=lambda: int(time.time()))
    busy: bool = False  # a leg of ours rings or talks (ringinuse = no)

    def fields(self, queue: str, name_key: str = "MemberName",
               interface_key: str = "Interface") -> Pairs:
        status = "2" if self.busy else "1"
        return [("Queue", queue), (name_key, self.name), (interface_key, self.interface),
                ("StateInterface", self.interface),
                ("Membership", "dynamic" if self.dynamic else "static"),
                ("Penalty", str(self.penalty)), ("CallsTaken", str(self.calls)),
                ("LastCall", str(self.last_call)), ("LastPause", str(self.last_pause)),
                ("LoginTime", str(self.login)), ("InCall", "0"), ("Status", status),
                ("Paused", "1" if self.paused else "0"), ("PausedReason", self.reason)]

    def event_fields(self, queue: str) -> Pairs:
        return [*self.fields(queue), ("Ringinuse", "0"), ("Wrapuptime", "0")]


@dataclass(eq=False)
class Entry:
    chan: Channel
    priority: int
    joined: float
    original_position: int
    moh_stopped: bool = False


@dataclass(eq=False)
class Queue:
    name: str
    strategy: str
    timeout_s: float
    retry_s: float
    members: list[Member]
    servicelevel: int = 20
    entries: list[Entry] = field(default_factory=list)
    holdtime: int = 0
    talktime: int = 0
    completed: int = 0
    completed_in_sl: int = 0
    abandoned: int = 0

    def member(self, interface: str) -> Member | None:
        return next((m for m in self.members if m.interface == interface), None)

    def join(self, chan: Channel, priority: int, now: float) -> Entry:
        """A caller goes behind every caller of the same or a higher
        priority (a VIP at QUEUE_PRIO=10 goes first, recording 04)."""
        position = next((i for i, e in enumerate(self.entries) if e.priority < priority),
                        len(self.entries))
        entry = Entry(chan, priority, now, position + 1)
        self.entries.insert(position, entry)
        return entry

    def position(self, entry: Entry) -> int:
        return self.entries.index(entry) + 1

    def free(self) -> list[Member]:
        return [m for m in self.members if not m.paused and not m.busy]

    def to_ring(self) -> list[Member]:
        """linear: the first free member in order; ringall: every free
        member of the lowest penalty."""
        free = self.free()
        if not free:
            return []
        if self.strategy == "linear":
            return [free[0]]
        best = min(m.penalty for m in free)
        # app_queue walks its member hash container (37 buckets) and
        # prepends each call attempt to its list, so ringall rings in the
        # reverse of bucket order: Heidi before Dave (recording 05)
        chosen = sorted((m for m in free if m.penalty == best), key=_bucket)
        return chosen[::-1]

    def perf(self) -> str:
        return f"{100.0 * self.completed_in_sl / self.completed if self.completed else 0.0:.1f}"


def _bucket(member: Member) -> int:
    """member_hash_fn of app_queue: sum of compress_char over the interface."""
    total = 0
    for char in member.interface:
        code = ord(char) & 0x7F
        total += 0 if code < 32 else code - 64 if code > 96 else code - 32
    return total % 37


def recorded_queues() -> dict[str, Queue]:
    """queues.conf of the recordings (sales: scenario 4, helpdesk: 5, support: 9)."""
    return {
        "sales": Queue("sales", "linear", 10, 1,
                       [Member("Local/1002@sim-agent", "Carol Durand")]),
        "helpdesk": Queue("helpdesk", "ringall", 4, 1,
                          [Member("Local/1003@sim-agent", "Dave Petit")]),
        "support": Queue("support", "linear", 10, 1,
                         [Member("Local/1005@sim-agent", "Frank Moreau"),
                          Member("Local/1001@sim-agent", "Bob Martin", penalty=1)]),
    }


@dataclass(eq=False)
class Leg:
    member: Member
    one: Channel
    two: Channel


def _average(old: int, new: int) -> int:
    # app_queue's recalc_holdtime: a 3:1 running average seeded by the first call
    return new if old == 0 else (3 * old + new) >> 2


class Queues:
    """The queues and their callers; `run` is the Queue() application."""

    def __init__(self, rt: Runtime, queues: dict[str, Queue] | None = None) -> None:
        self.rt = rt
        self.queues = queues if queues is not None else recorded_queues()

    # ------------------------------------------------------------ time
    def _sim_seconds(self, since: float) -> float:
        return (time.monotonic() - since) * self.rt.speed

    # ------------------------------------------------------------ events
    def _emit(self, event: str, pairs: Pairs) -> None:
        self.rt.switch.emit(event, "agent", pairs)

    def _member_status(self, queue: Queue, member: Member) -> None:
        self._emit("QueueMemberStatus", member.event_fields(queue.name))

    def _queue_vars(self, chan: Channel, queue: Queue) -> None:
        for name, value in (
            ("QUEUENAME", queue.name), ("QUEUEMAX", "0"), ("QUEUESTRATEGY", queue.strategy),
            ("QUEUECALLS", str(len(queue.entries))), ("QUEUEHOLDTIME", str(queue.holdtime)),
            ("QUEUETALKTIME", str(queue.talktime)), ("QUEUECOMPLETED", str(queue.completed)),
            ("QUEUEABANDONED", str(queue.abandoned)),
            ("QUEUESRVLEVEL", str(queue.servicelevel)), ("QUEUESRVLEVELPERF", queue.perf()),
        ):
            self.rt.switch.set_var(chan, name, value)

    def _member_vars(self, chan: Channel, member: Member) -> None:
        for name, value in (
            ("MEMBERINTERFACE", member.interface), ("MEMBERNAME", member.name),
            ("MEMBERCALLS", str(member.calls)), ("MEMBERLASTCALL", str(member.last_call)),
            ("MEMBERPENALTY", str(member.penalty)),
            ("MEMBERDYNAMIC", "1" if member.dynamic else "0"), ("MEMBERREALTIME", "0"),
        ):
            self.rt.switch.set_var(chan, name, value)

    def _agent_event(self, event: str, chan: Channel, leg: Leg, queue: Queue,
                     *tail: tuple[str, str]) -> None:
        self._emit(event, [*chan.fields(), *leg.one.fields("Dest"), ("Queue", queue.name),
                           ("Interface", leg.member.interface),
                           ("MemberName", leg.member.name), *tail])

    # ------------------------------------------------------------ Queue()
    async def run(self, rt: Runtime, chan: Channel, args: list[str]) -> Outcome:
        """Queue(name,options,URL,announce,timeout)."""
        switch = rt.switch
        queue = self.queues.get(args[0] if args else "")
        if queue is None:
            switch.set_var(chan, "QUEUESTATUS", "UNKNOWN")
            return Outcome.NEXT
        limit = float(args[4]) if len(args) > 4 and args[4] else None
        for name in CLEARED_ON_JOIN:
            switch.set_var(chan, name, "")
        prio_text = chan.variables.get("QUEUE_PRIO", "0")
        entry = queue.join(chan, int(prio_text) if prio_text.isdigit() else 0, time.monotonic())
        self._emit("QueueCallerJoin", [*chan.fields(), ("Queue", queue.name),
                                       ("Position", str(queue.position(entry))),
                                       ("Count", str(len(queue.entries)))])
        switch.emit("MusicOnHoldStart", "call", [*chan.fields(), ("Class", "default")])
        while True:
            if chan.interrupted:
                return self._abandon(chan, queue, entry)
            if limit is not None and self._sim_seconds(entry.joined) >= limit:
                switch.emit("MusicOnHoldStop", "call", chan.fields())
                self._leave(chan, queue, entry)
                switch.set_var(chan, "QUEUESTATUS", "TIMEOUT")
                return Outcome.NEXT
            members = queue.to_ring()
            # autofill: as many callers try at once as there are free members
            if members and queue.position(entry) <= len(queue.free()):
                outcome = await self._attempt(chan, queue, entry, members)
                if outcome is not None:
                    return outcome
                await rt.hold(chan, queue.retry_s)
                continue
            await rt.hold(chan, POLL_S)

    def _leave(self, chan: Channel, queue: Queue, entry: Entry) -> int:
        position = queue.position(entry)
        queue.entries.remove(entry)
        self._emit("QueueCallerLeave", [*chan.fields(), ("Queue", queue.name),
                                        ("Position", str(position)),
                                        ("Count", str(len(queue.entries)))])
        return position

    def _abandon(self, chan: Channel, queue: Queue, entry: Entry) -> Outcome:
        """The caller hung up while waiting (recording 05): the wait times,
        ABANDONED, the queue variables before and after the count."""
        switch = self.rt.switch
        if not entry.moh_stopped:
            switch.emit("MusicOnHoldStop", "call", chan.fields())
        held_s = self._sim_seconds(entry.joined)
        held = int(held_s)
        for name, value in (("QUEUEWAIT", str(held)), ("QUEUEWAIT_MS", str(int(held_s * 1000))),
                            ("DIALEDTIME", str(held)), ("DIALEDTIME_MS", str(int(held_s * 1000))),
                            ("ANSWEREDTIME", "0"), ("ANSWEREDTIME_MS", "0"),
                            ("ABANDONED", "TRUE")):
            switch.set_var(chan, name, value)
        self._queue_vars(chan, queue)
        queue.abandoned += 1
        self._emit("QueueCallerAbandon", [*chan.fields(), ("Queue", queue.name),
                                          ("Position", str(queue.position(entry))),
                                          ("OriginalPosition", str(entry.original_position)),
                                          ("HoldTime", str(held))])
        self._queue_vars(chan, queue)
        position = self._leave(chan, queue, entry)
        switch.set_var(chan, "QUEUEPOSITION", str(position))
        return Outcome.HANGUP

    def _call_member(self, chan: Channel, queue: Queue, member: Member) -> Leg | None:
        switch = self.rt.switch
        target = parse_local(member.interface)
        if target is None:
            return None
        exten, context = target
        one, two = switch.local_pair(exten, context, linkedid=chan.linkedid)
        leg = Leg(member, one, two)
        one.cid_num, one.cid_name = chan.cid_num, chan.cid_name
        switch.newexten(one, "AppQueue", "(Outgoing Line)")
        switch.emit("NewCallerid", "call", [*one.fields(), CALLING_PRES])
        switch.set_var(one, "DIALEDPEERNUMBER", f"{exten}@{context}")
        switch.set_var(two, "DIALEDPEERNUMBER", f"{exten}@{context}")
        switch.set_callerid(two, chan.cid_num, chan.cid_name, (chan.cid_num, chan.cid_name))
        if not self.rt.dialplan.exists(context, exten):
            refuse_unknown(self.rt, one, two)
            return None
        switch.local_bridge(one, two)
        member.busy = True
        # AgentCalled shows the member leg at the queue's name as Exten
        one.exten = queue.name
        self._agent_event("AgentCalled", chan, leg, queue)
        one.exten = exten
        switch.dial_event("DialBegin", chan, one, [("DialString", member.interface)])
        self.rt.start_pbx(two)
        self._member_status(queue, member)
        return leg

    async def _attempt(self, chan: Channel, queue: Queue, entry: Entry,
                       members: list[Member]) -> Outcome | None:
        """Ring `members` for the queue's timeout; None when nobody answered."""
        rt, switch = self.rt, self.rt.switch
        started = time.monotonic()
        legs = [leg for m in members if (leg := self._call_member(chan, queue, m)) is not None]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + rt.real(queue.timeout_s)
        ringing = list(legs)
        winner: Leg | None = None
        while ringing and winner is None:
            for leg in list(ringing):
                while leg.one.controls and winner is None:
                    control = leg.one.controls.popleft()
                    if control == "ringing":
                        leg.one.exten = queue.name
                        switch.newexten(leg.one, "AppQueue", "(Outgoing Line)")
                        leg.one.conn_num, leg.one.conn_name = chan.cid_num, chan.cid_name
                        switch.emit("NewConnectedLine", "call", leg.one.fields())
                        switch.dial_event("DialState", chan, leg.one, [("DialStatus", "RINGING")])
                    elif control == "answer":
                        winner = leg
                    elif control in ("busy", "congestion"):
                        ringing.remove(leg)
                        self._drop(chan, queue, leg, control.upper())
                if winner is None and leg in ringing and not leg.one.alive:
                    ringing.remove(leg)
                    self._drop(chan, queue, leg, "CHANUNAVAIL")
            if winner is not None or not ringing:
                break
            if chan.interrupted:
                # the caller hung up while members ring (recording 05)
                switch.emit("MusicOnHoldStop", "call", chan.fields())
                entry.moh_stopped = True
                for leg in ringing:
                    self._drop(chan, queue, leg, "CANCEL", "CANCEL")
                return None
            left = deadline - loop.time()
            if left <= 0:
                for leg in ringing:
                    self._agent_event("AgentRingNoAnswer", chan, leg, queue,
                                      ("RingTime", str(int(queue.timeout_s * 1000))))
                    self._drop(chan, queue, leg, "NOANSWER", "CANCEL")
                return None
            await switch.wait_any([chan, *(leg.one for leg in ringing)], left)
        if winner is None:
            return None
        ring_s = int(self._sim_seconds(started))
        switch.dial_event("DialEnd", chan, winner.one, [("DialStatus", "ANSWER")])
        for leg in ringing:
            if leg is not winner:
                leg.one.hangupcause = 26  # answered elsewhere (finding 9)
                self._drop(chan, queue, leg, "CANCEL", "CANCEL")
        return await self._connect(chan, queue, entry, winner, ring_s)

    def _drop(self, chan: Channel, queue: Queue, leg: Leg, *statuses: str) -> None:
        """End a member leg; app_queue reports two DialEnd for a leg it
        gives up on (NOANSWER then CANCEL, or CANCEL twice, finding 9)."""
        switch = self.rt.switch
        for status in statuses:
            switch.dial_event("DialEnd", chan, leg.one, [("DialStatus", status)])
        leg.one.hangup_requested = True
        switch.hangup(leg.one)
        leg.member.busy = False
        self._member_status(queue, leg.member)

    async def _connect(self, chan: Channel, queue: Queue, entry: Entry, leg: Leg,
                       ring_s: int) -> Outcome:
        rt, switch = self.rt, self.rt.switch
        one, member = leg.one, leg.member
        switch.emit("MusicOnHoldStop", "call", chan.fields())
        held_s = self._sim_seconds(entry.joined)
        held = int(held_s)
        queue.holdtime = _average(queue.holdtime, held)
        for target in (chan, one):
            self._member_vars(target, member)
        for target in (chan, one):
            switch.set_var(target, "QEHOLDTIME", str(held))
            switch.set_var(target, "QEORIGINALPOS", str(entry.original_position))
        for target in (chan, one):
            self._queue_vars(target, queue)
        position = self._leave(chan, queue, entry)
        switch.set_var(chan, "QUEUEPOSITION", str(position))
        switch.set_var(chan, "QUEUEWAIT", str(held))
        switch.set_var(chan, "QUEUEWAIT_MS", str(int(held_s * 1000)))
        self._agent_event("AgentConnect", chan, leg, queue, ("HoldTime", str(held)),
                          ("RingTime", str(ring_s)))
        bridge = switch.bridge_create()
        switch.bridge_enter(bridge, one)
        switch.bridge_enter(bridge, chan)
        switch.set_var(one, "BRIDGEPEER", chan.name)
        switch.set_var(chan, "BRIDGEPEER", one.name)
        answered = time.monotonic()
        while not (chan.hangup_requested or one.hangup_requested or not one.alive):
            await rt.wait([chan, one], None)
        talk_s = self._sim_seconds(answered)
        talk = int(talk_s)
        reason = "caller" if chan.hangup_requested else "agent"
        self._agent_event("AgentComplete", chan, leg, queue, ("HoldTime", str(held)),
                          ("TalkTime", str(talk)), ("Reason", reason))
        switch.set_var(one, "BRIDGEPEER", "")
        switch.set_var(chan, "BRIDGEPEER", "")
        if reason == "agent":
            switch.bridge_leave(one)
            switch.hangup(one)
            switch.bridge_leave(chan)
        else:
            switch.bridge_leave(chan)
            switch.bridge_leave(one)
            one.hangupcause = one.hangupcause or 16
            one.hangup_requested = True
            switch.hangup(one)
        switch.bridge_destroy(bridge)
        queue.completed += 1
        if held <= queue.servicelevel:
            queue.completed_in_sl += 1
        queue.talktime = _average(queue.talktime, talk)
        member.calls += 1
        member.last_call = int(time.time())
        member.busy = False
        self._queue_vars(chan, queue)
        self._member_status(queue, member)
        total_s = self._sim_seconds(entry.joined)
        for name, value in (("ANSWEREDTIME", str(talk)),
                            ("ANSWEREDTIME_MS", str(int(talk_s * 1000))),
                            ("DIALEDTIME", str(int(total_s))),
                            ("DIALEDTIME_MS", str(int(total_s * 1000)))):
            switch.set_var(chan, name, value)
        self._queue_vars(chan, queue)
        return Outcome.HANGUP


class QueueActions:
    """QueueAdd, QueueRemove, QueuePause, QueuePenalty, QueueStatus and
    QueueSummary over `Queues`, with Asterisk 22's messages (recordings 04, 05)."""

    def __init__(self, server: AmiServer, queues: Queues) -> None:
        self.queues = queues
        self._emit = queues.rt.switch.emit
        server.actions.update({
            "queueadd": self.add,
            "queueremove": self.remove,
            "queuepause": self.pause,
            "queuepenalty": self.penalty,
            "queuestatus": self.status,
            "queuesummary": self.summary,
        })

    def _error(self, session: Session, msg: AmiMessage, text: str) -> None:
        session.send(respond(msg, "Error", ("Message", text)))

    def _find(self, msg: AmiMessage) -> tuple[Queue | None, Member | None]:
        queue = self.queues.queues.get(msg.get("Queue") or "")
        interface = msg.get("Interface") or ""
        return queue, queue.member(interface) if queue is not None else None

    async def add(self, session: Session, msg: AmiMessage) -> None:
        queue, member = self._find(msg)
        if queue is None:
            self._error(session, msg, "Unable to add interface to queue: No such queue")
            return
        if member is not None:
            self._error(session, msg, "Unable to add interface to queue: Already there")
            return
        interface = msg.get("Interface") or ""
        penalty = msg.get("Penalty") or "0"
        member = Member(interface, msg.get("MemberName") or interface,
                        int(penalty) if penalty.isdigit() else 0, dynamic=True,
                        paused=(msg.get("Paused") or "").lower() in ("true", "yes", "1"))
        queue.members.append(member)
        self._emit("QueueMemberAdded", "agent", member.event_fields(queue.name))
        session.send(respond(msg, "Success", ("Message", "Added interface to queue")))

    async def remove(self, session: Session, msg: AmiMessage) -> None:
        queue, member = self._find(msg)
        if queue is None or member is None:
            self._error(session, msg, "Unable to remove interface: Not there")
            return
        queue.members.remove(member)
        self._emit("QueueMemberRemoved", "agent", member.event_fields(queue.name))
        session.send(respond(msg, "Success", ("Message", "Removed interface from queue")))

    async def pause(self, session: Session, msg: AmiMessage) -> None:
        paused = (msg.get("Paused") or "").lower() in ("true", "yes", "1")
        name = msg.get("Queue")
        interface = msg.get("Interface") or ""
        queues = [self.queues.queues[name]] if name in self.queues.queues else []
        if not name:
            queues = list(self.queues.queues.values())
        found = [(q, m) for q in queues if (m := q.member(interface)) is not None]
        if not found:
            self._error(session, msg, "Interface not found")
            return
        for queue, member in found:
            member.paused = paused
            member.reason = (msg.get("Reason") or "") if paused else ""
            if paused:
                member.last_pause = int(time.time())
            self._emit("QueueMemberPause", "agent", member.event_fields(queue.name))
        text = "paused" if paused else "unpaused"
        session.send(respond(msg, "Success", ("Message", f"Interface {text} successfully")))

    async def penalty(self, session: Session, msg: AmiMessage) -> None:
        queue, member = self._find(msg)
        value = msg.get("Penalty") or ""
        if queue is None or member is None or not value.isdigit():
            self._error(session, msg, "Invalid interface, queuename or penalty")
            return
        member.penalty = int(value)
        self._emit("QueueMemberPenalty", "agent", member.event_fields(queue.name))
        session.send(respond(msg, "Success", ("Message", "Interface penalty set successfully")))

    def _selected(self, msg: AmiMessage) -> list[Queue]:
        name = msg.get("Queue")
        if not name:
            return list(self.queues.queues.values())
        return [self.queues.queues[name]] if name in self.queues.queues else []

    def _aid(self, msg: AmiMessage) -> Pairs:
        return [("ActionID", msg.action_id)] if msg.action_id is not None else []

    async def status(self, session: Session, msg: AmiMessage) -> None:
        session.send(respond(msg, "Success", ("EventList", "start"),
                             ("Message", "Queue status will follow")))
        count = 0
        now = time.monotonic()
        for queue in self._selected(msg):
            session.send([("Event", "QueueParams"), ("Queue", queue.name), ("Max", "0"),
                          ("Strategy", queue.strategy), ("Calls", str(len(queue.entries))),
                          ("Holdtime", str(queue.holdtime)), ("TalkTime", str(queue.talktime)),
                          ("Completed", str(queue.completed)),
                          ("Abandoned", str(queue.abandoned)),
                          ("ServiceLevel", str(queue.servicelevel)),
                          ("ServicelevelPerf", queue.perf()), ("ServicelevelPerf2", queue.perf()),
                          ("Weight", "0"), *self._aid(msg)])
            count += 1
            for member in queue.members:
                pairs = member.fields(queue.name, "Name", "Location")
                session.send([("Event", "QueueMember"), *pairs, ("Wrapuptime", "0"),
                              *self._aid(msg)])
                count += 1
            for position, entry in enumerate(queue.entries, 1):
                chan = entry.chan
                wait = int((now - entry.joined) * self.queues.rt.speed)
                session.send([("Event", "QueueEntry"), ("Queue", queue.name),
                              ("Position", str(position)), ("Channel", chan.name),
                              ("Uniqueid", chan.uniqueid), ("CallerIDNum", chan.cid_num),
                              ("CallerIDName", chan.cid_name),
                              ("ConnectedLineNum", chan.conn_num),
                              ("ConnectedLineName", chan.conn_name), ("Wait", str(wait)),
                              ("Priority", str(entry.priority)), *self._aid(msg)])
                count += 1
        session.send([("Event", "QueueStatusComplete"), *self._aid(msg),
                      ("EventList", "Complete"), ("ListItems", str(count))])

    async def summary(self, session: Session, msg: AmiMessage) -> None:
        session.send(respond(msg, "Success", ("EventList", "start"),
                             ("Message", "Queue summary will follow")))
        queues = self._selected(msg)
        now = time.monotonic()
        for queue in queues:
            free = [m for m in queue.members if not m.paused]
            longest = max((int((now - e.joined) * self.queues.rt.speed) for e in queue.entries),
                          default=0)
            session.send([("Event", "QueueSummary"), ("Queue", queue.name),
                          ("LoggedIn", str(len(queue.members))), ("Available",
                          str(len([m for m in free if not m.busy]))),
                          ("Callers", str(len(queue.entries))),
                          ("HoldTime", str(queue.holdtime)), ("TalkTime", str(queue.talktime)),
                          ("LongestHoldTime", str(longest)), *self._aid(msg)])
        session.send([("Event", "QueueSummaryComplete"), *self._aid(msg),
                      ("EventList", "Complete"), ("ListItems", str(len(queues)))])
