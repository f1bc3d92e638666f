"""The AMI actions the simulator answers, with Asterisk 22's replies
(recordings 01-11): Ping, Events, Filter, Originate (sync and async,
OriginateResponse), Redirect, Setvar, Getvar, Hangup, UserEvent, Command,
and the list actions Status, CoreShowChannels, DeviceStateList,
ExtensionStateList, QueueStatus, QueueSummary, BridgeList, Agents.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from cti.pbx.wire import AmiMessage
from cti.sim.ami_server import AmiServer, Session, respond
from cti.sim.channels import Channel, Pairs
from cti.sim.dial import OriginateRequest, OriginateResult, originate
from cti.sim.runtime import Runtime
from cti.sim.transfer import attended_transfer, transferee_of

# app_agent_pool's agents (agents.conf of the recordings): never logged in,
# so their `Agent:` devices read UNAVAILABLE (recording 09)
AGENT_POOL = (("1001", "Bob Martin"), ("1002", "Carol Durand"))
_CALLERID = re.compile(r'\s*"?([^"<]*?)"?\s*<([^>]*)>\s*\Z')
RESTARTS = {"core restart now", "core restart gracefully", "core restart when convenient"}
VERSION = "Asterisk 22.10.1 built by cti-sim on a simulated PBX"


def parse_callerid(value: str) -> tuple[str, str]:
    match = _CALLERID.match(value)
    if match is None:
        return value.strip(), ""
    return match.group(2), match.group(1)


class Actions:
    def __init__(self, server: AmiServer, rt: Runtime,
                 restart: Callable[[], None] | None = None) -> None:
        self.server = server
        self.rt = rt
        self._restart = restart
        table = {
            "ping": self.ping,
            "events": self.events,
            "filter": self.filter,
            "originate": self.originate,
            "redirect": self.redirect,
            "setvar": self.setvar,
            "getvar": self.getvar,
            "hangup": self.hangup,
            "atxfer": self.atxfer,
            "userevent": self.user_event,
            "command": self.command,
            "status": self.status,
            "coreshowchannels": self.core_show_channels,
            "devicestatelist": self.device_state_list,
            "extensionstatelist": self.extension_state_list,
            "extensionstate": self.extension_state,
            "queuestatus": self._empty("Queue status will follow", "QueueStatusComplete"),
            "queuesummary": self._empty("Queue summary will follow", "QueueSummaryComplete"),
            "bridgelist": self.bridge_list,
            "agents": self.agents,
        }
        server.actions.update(table)

    # ------------------------------------------------------------ session
    async def ping(self, session: Session, msg: AmiMessage) -> None:
        session.send(respond(msg, "Success", ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")))

    async def events(self, session: Session, msg: AmiMessage) -> None:
        self.server.apply_events(session, msg.get("EventMask"))
        session.send(respond(msg, "Success", ("Events", "On" if session.events else "Off")))

    async def filter(self, session: Session, msg: AmiMessage) -> None:
        rule = msg.get("Filter") or ""
        if (msg.get("Operation") or "add").lower() != "add" or not rule:
            session.send(respond(msg, "Error", ("Message", "Unknown operation")))
            return
        # A whitelist filter keeps the events whose text contains the rule
        # (Asterisk matches a regex; the CTI server only uses plain strings).
        session.filters.append(rule.lstrip("!"))
        session.send(respond(msg, "Success", ("Message", "Success")))

    async def user_event(self, session: Session, msg: AmiMessage) -> None:
        pairs = [(k, v) for k, v in msg.pairs if k.lower() != "action"]
        head = [p for p in pairs if p[0].lower() == "userevent"]
        rest = [p for p in pairs if p[0].lower() != "userevent"]
        self.server.broadcast("UserEvent", "user", [*head, *rest])
        session.send(respond(msg, "Success", ("Message", "Event Sent")))

    async def command(self, session: Session, msg: AmiMessage) -> None:
        command = (msg.get("Command") or "").strip()
        if command == "core show version":
            session.send(respond(msg, "Success", ("Message", "Command output follows"),
                                 ("Output", VERSION)))
            return
        if " ".join(command.split()) in RESTARTS and self._restart is not None:
            # no response: the Shutdown event then the close (recording 11)
            self._restart()
            return
        words = " ".join(command.split()[:2])
        session.send(respond(msg, "Error", ("Message", "Command output follows"), (
            "Output",
            f"No such command '{command}' (type 'core show help {words}' "
            "for other possible commands)",
        )))

    # ------------------------------------------------------------ channels
    def _channel(self, session: Session, msg: AmiMessage) -> Channel | None:
        name = msg.get("Channel") or ""
        chan = self.rt.switch.find(name)
        if chan is None:
            session.send(respond(msg, "Error", ("Message", f"Channel does not exist: {name}")))
        return chan

    async def setvar(self, session: Session, msg: AmiMessage) -> None:
        name, value = msg.get("Variable") or "", msg.get("Value") or ""
        if not name:
            session.send(respond(msg, "Error", ("Message", "No variable specified")))
            return
        if msg.get("Channel") is None:
            # no Channel sets a global variable (recording 11)
            self.rt.switch.set_global(name, value)
        else:
            chan = self._channel(session, msg)
            if chan is None:
                return
            self.rt.switch.set_var(chan, name, value)
        session.send(respond(msg, "Success", ("Message", "Variable Set")))

    async def getvar(self, session: Session, msg: AmiMessage) -> None:
        name = msg.get("Variable") or ""
        if msg.get("Channel") is None:
            value = self.rt.switch.globals.get(name, "")
        else:
            chan = self._channel(session, msg)
            if chan is None:
                return
            value = chan.variables.get(name, "")
        session.send(respond(msg, "Success", ("Variable", name), ("Value", value)))

    async def redirect(self, session: Session, msg: AmiMessage) -> None:
        if not msg.get("Channel"):
            session.send(respond(msg, "Error", ("Message", "Channel not specified")))
            return
        chan = self._channel(session, msg)
        if chan is None:
            return
        context = msg.get("Context") or chan.context
        exten = msg.get("Exten") or ""
        priority = int(msg.get("Priority") or "1")
        if not self.rt.dialplan.exists(context, exten):
            session.send(respond(msg, "Error", ("Message", "Redirect failed")))
            return
        # ast_async_goto: the channel's own thread moves when it notices.
        chan.goto = (context, exten, priority)
        chan.poke()
        session.send(respond(msg, "Success", ("Message", "Redirect successful")))

    async def hangup(self, session: Session, msg: AmiMessage) -> None:
        name = msg.get("Channel") or ""
        chan = self.rt.switch.find(name)
        if chan is None:
            session.send(respond(msg, "Error", ("Message", "No such channel")))
            return
        cause = msg.get("Cause")
        self.rt.switch.ami_hangup(chan, int(cause) if cause and cause.isdigit() else None)
        session.send(respond(msg, "Success", ("Message", "Channel Hungup")))

    async def atxfer(self, session: Session, msg: AmiMessage) -> None:
        """Atxfer: answered at once, the transfer then runs on its own
        (cti.sim.transfer, recording 06b)."""
        exten = msg.get("Exten") or ""
        if not msg.get("Channel"):
            session.send(respond(msg, "Error", ("Message", "No channel specified")))
            return
        if not exten:
            session.send(respond(msg, "Error", ("Message", "No extension specified")))
            return
        chan = self._channel(session, msg)
        if chan is None:
            return
        if transferee_of(chan) is None:
            session.send(respond(msg, "Error", ("Message", "Atxfer failed")))
            return
        context = msg.get("Context") or chan.context
        self.rt.spawn(attended_transfer(self.rt, chan, exten, context))
        session.send(respond(msg, "Success", ("Message", "Atxfer successfully queued")))

    # ------------------------------------------------------------ originate
    async def originate(self, session: Session, msg: AmiMessage) -> None:
        channel = msg.get("Channel")
        if not channel:
            session.send(respond(msg, "Error", ("Message", "Channel not specified")))
            return
        variables = []
        for item in msg.getall("Variable"):
            for assignment in item.split(","):
                name, _, value = assignment.partition("=")
                if name:
                    variables.append((name.strip(), value))
        callerid = msg.get("CallerID")
        request = OriginateRequest(
            channel=channel,
            context=msg.get("Context") or "",
            exten=msg.get("Exten") or "",
            priority=int(msg.get("Priority") or "1"),
            application=msg.get("Application") or "",
            data=msg.get("Data") or "",
            callerid=parse_callerid(callerid) if callerid else None,
            timeout_s=int(msg.get("Timeout") or "30000") / 1000.0,
            variables=variables,
            ids=(msg.get("ChannelId"), msg.get("OtherChannelId")),
        )
        if (msg.get("Async") or "").lower() in ("true", "yes", "1", "on"):
            session.send(respond(msg, "Success", ("Message", "Originate successfully queued")))
            self.rt.spawn(self._originate_async(request, msg.action_id))
            return
        # A synchronous Originate answers once the call is answered, with the
        # same text as the async one; a failure is `Originate failed` and no
        # OriginateResponse event (finding 2).
        result = await originate(self.rt, request)
        if result.success:
            session.send(respond(msg, "Success", ("Message", "Originate successfully queued")))
        else:
            session.send(respond(msg, "Error", ("Message", "Originate failed")))

    async def _originate_async(self, request: OriginateRequest, action_id: str | None) -> None:
        result = await originate(self.rt, request)
        self.server.broadcast("OriginateResponse", "call", _originate_response(
            request, result, action_id))

    # ------------------------------------------------------------ lists
    def _start(self, session: Session, msg: AmiMessage, text: str) -> None:
        session.send(respond(msg, "Success", ("EventList", "start"), ("Message", text)))

    def _complete(self, session: Session, msg: AmiMessage, event: str, count: int,
                  *extra: tuple[str, str]) -> None:
        pairs: Pairs = [("Event", event)]
        if msg.action_id is not None:
            pairs.append(("ActionID", msg.action_id))
        session.send([*pairs, ("EventList", "Complete"), ("ListItems", str(count)), *extra])

    def _empty(self, text: str, complete: str):  # type: ignore[no-untyped-def]
        async def handler(session: Session, msg: AmiMessage) -> None:
            # The simulator runs no app_queue / app_agent_pool: empty lists,
            # which is what Asterisk answers for an unknown queue (finding 10).
            self._start(session, msg, text)
            self._complete(session, msg, complete, 0)

        return handler

    def _aid(self, msg: AmiMessage) -> Pairs:
        return [("ActionID", msg.action_id)] if msg.action_id is not None else []

    async def status(self, session: Session, msg: AmiMessage) -> None:
        name = msg.get("Channel")
        switch = self.rt.switch
        if name:
            chan = switch.find(name)
            if chan is None:
                session.send(respond(msg, "Error", ("Message", "No such channel")))
                return
            chans = [chan]
        else:
            chans = list(switch.channels.values())
        wanted = [v.strip() for v in (msg.get("Variables") or "").split(",") if v.strip()]
        self._start(session, msg, "Channel status will follow")
        for chan in chans:
            bridge = chan.bridge.uniqueid if chan.bridge else ""
            pairs: Pairs = [("Event", "Status"), ("Privilege", "Call"), *chan.fields(),
                            ("Type", "Local"), ("DNID", ""),
                            ("EffectiveConnectedLineNum", chan.conn_num),
                            ("EffectiveConnectedLineName", chan.conn_name),
                            ("TimeToHangup", "0"), ("BridgeID", bridge),
                            ("Application", chan.application), ("Data", chan.app_data),
                            ("Nativeformats", "(slin)"), ("Readformat", "slin"),
                            ("Readtrans", ""), *_write_format(chan),
                            ("Callgroup", "0"), ("Pickupgroup", "0"),
                            ("Seconds", str(self._age(chan)))]
            for var in wanted:
                pairs.append(("Variable", f"{var}={chan.variables.get(var, '(null)')}"))
            session.send([*pairs, *self._aid(msg)])
        self._complete(session, msg, "StatusComplete", len(chans), ("Items", str(len(chans))))

    async def core_show_channels(self, session: Session, msg: AmiMessage) -> None:
        chans = list(self.rt.switch.channels.values())
        self._start(session, msg, "Channels will follow")
        for chan in chans:
            seconds = self._age(chan)
            duration = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
            session.send([("Event", "CoreShowChannel"), *self._aid(msg), *chan.fields(),
                          ("Application", chan.application),
                          ("ApplicationData", chan.app_data), ("Duration", duration),
                          ("BridgeId", chan.bridge.uniqueid if chan.bridge else "")])
        self._complete(session, msg, "CoreShowChannelsComplete", len(chans))

    def _age(self, chan: Channel) -> int:
        """Seconds of simulated time since the channel was created."""
        return int((time.monotonic() - chan.created) * self.rt.speed)

    async def device_state_list(self, session: Session, msg: AmiMessage) -> None:
        # The device state cache: Local devices are not cached (core_local
        # marks them not cachable), app_agent_pool's and app_queue's are
        # (recording 09). Queue devices belong to app_queue's module.
        # (the cache's order, as recorded: 1002 before 1001)
        devices = [(f"Agent:{agent}", "UNAVAILABLE") for agent, _ in reversed(AGENT_POOL)]
        self._start(session, msg, "Device State Changes will follow")
        for device, state in devices:
            session.send([("Event", "DeviceStateChange"), *self._aid(msg), ("Device", device),
                          ("State", state)])
        self._complete(session, msg, "DeviceStateListComplete", len(devices))

    async def agents(self, session: Session, msg: AmiMessage) -> None:
        self._start(session, msg, "Agents will follow")
        for agent, name in AGENT_POOL:
            session.send([("Event", "Agents"), ("Agent", agent), ("Name", name),
                          ("Status", "AGENT_LOGGEDOFF"), *self._aid(msg)])
        self._complete(session, msg, "AgentsComplete", len(AGENT_POOL))

    async def bridge_list(self, session: Session, msg: AmiMessage) -> None:
        bridges = list(self.rt.switch.bridges.values())
        self._start(session, msg, "Bridge listing will follow")
        for bridge in bridges:
            session.send([("Event", "BridgeListItem"), *self._aid(msg), *bridge.fields()])
        self._complete(session, msg, "BridgeListComplete", len(bridges))

    def _extension_pairs(self, exten: str) -> Pairs:
        switch = self.rt.switch
        status = switch.hint_status(exten) or 0
        return [("Exten", exten), ("Context", "hints"), ("Hint", switch.hinted()[exten]),
                ("Status", str(status)), ("StatusText", "InUse" if status else "Idle")]

    async def extension_state_list(self, session: Session, msg: AmiMessage) -> None:
        extens = sorted(self.rt.switch.hinted(), key=_hint_bucket)
        self._start(session, msg, "Extension Statuses will follow")
        for exten in extens:
            session.send([("Event", "ExtensionStatus"), *self._aid(msg),
                          *self._extension_pairs(exten)])
        self._complete(session, msg, "ExtensionStateListComplete", len(extens))

    async def extension_state(self, session: Session, msg: AmiMessage) -> None:
        exten = msg.get("Exten") or ""
        if exten not in self.rt.switch.hinted():
            session.send(respond(msg, "Error", ("Message", "Extension not found")))
            return
        session.send(respond(msg, "Success", ("Message", "Extension Status"),
                             *self._extension_pairs(exten)))


def _hint_bucket(exten: str) -> tuple[int, str]:
    """Asterisk lists hints in the order of its hint container's buckets:
    ast_str_case_hash(exten) % 563 (recording 09: 1005 1006 1001 1002 1003)."""
    value = 5381
    for char in exten.lower():
        value = ((value * 33) ^ ord(char)) & 0xFFFFFFFF
    signed = value - (1 << 32) if value >= 1 << 31 else value
    return abs(signed) % 563, exten


def _write_format(chan: Channel) -> Pairs:
    """Music on hold plays gsm files, transcoded to the channel's slin
    (recording 09: the callers in MusicOnHold, and in Queue until bridged)."""
    if chan.application == "MusicOnHold" or (chan.application == "Queue" and chan.bridge is None):
        return [("Writeformat", "gsm"), ("Writetrans", "(gsm@8000)->(slin@8000)")]
    return [("Writeformat", "slin"), ("Writetrans", "")]


def _originate_response(
    request: OriginateRequest, result: OriginateResult, action_id: str | None
) -> Pairs:
    """OriginateResponse: a failure names the dial string and `<unknown>`
    Uniqueid (finding 2)."""
    pairs: Pairs = [("ActionID", action_id)] if action_id is not None else []
    chan = result.channel
    pairs += [("Response", "Success" if result.success else "Failure"),
              ("Channel", chan.name if chan is not None else request.channel)]
    if request.application:
        pairs += [("Application", request.application), ("Data", request.data)]
    else:
        pairs += [("Context", request.context), ("Exten", request.exten)]
    num, name = request.callerid or ("<unknown>", "<unknown>")
    pairs += [("Reason", str(result.reason)),
              ("Uniqueid", chan.uniqueid if chan is not None else "<unknown>"),
              ("CallerIDNum", num), ("CallerIDName", name)]
    return pairs

