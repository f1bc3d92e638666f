"""The dialplan the simulator runs: the `cti-*`, `ivr-inbound` and `sim-*`
contexts of the recordings' `config/extensions.conf`, as data, and the
IVR entry and the waiting contexts of `dialplans/cti.conf`
(`SimSettings.inbound_agi`).

Each priority is a `Step` (application + data); data may refer to channel
variables with `${...}` and hold simple `$[...]` comparisons and integer
sums like the real dialplan, so the `Newexten` AppData and the values the
CTI server sees are the same as Asterisk's.
"""

from __future__ import annotations

import random
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cti.sim.channels import Channel
from cti.sim.population import Phone, Pickup, Population

_SCRIPTED_KEPT = 1024  # channels whose scripted steps are remembered
_VAR = re.compile(r"\$\{([^{}]+)\}")
_EXPRESSION = re.compile(r"\$\[([^\[\]]*)\]")
_COMPARISON = re.compile(r'\s*("[^"]*"|[^\s"!=]*)\s*(!=|=)\s*("[^"]*"|[^\s"!=]*)\s*\Z')
_ARITHMETIC = re.compile(r"\s*(-?\d+)\s*(\+|-|>=|<=|>|<)\s*(-?\d+)\s*\Z")


@dataclass(frozen=True, slots=True)
class Step:
    """One priority; `label` names it for Goto/GotoIf (`same => n(done),...`)."""

    app: str
    data: str = ""
    label: str = ""


Lookup = Callable[[str], "list[Step] | None"]


def substitute(
    text: str, chan: Channel, globals_: Mapping[str, str], extra: Mapping[str, str]
) -> str:
    """Expand `${NAME}`, `${EXTEN}`, `${CHANNEL}`, `${CALLERID(all|num|name)}`,
    then `$[...]` comparisons; `extra` holds the values of the few
    expressions the Python dialplan computes itself (`Dialplan.expressions`)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in extra:
            return extra[name]
        if name == "EXTEN":
            return chan.exten
        if name == "CHANNEL":
            return chan.name
        if name == "CALLERID(num)":
            return chan.cid_num
        if name == "CALLERID(name)":
            return chan.cid_name
        if name == "CALLERID(all)":
            return f'"{chan.cid_name}" <{chan.cid_num}>'
        if name in chan.variables:
            return chan.variables[name]
        return globals_.get(name, "")

    return _EXPRESSION.sub(_compare, _VAR.sub(value, text))


def _compare(match: re.Match[str]) -> str:
    """`$["a" = "b"]` / `$[a != b]` -> "1" or "0", `$[12 + 3]` -> "15",
    `$[12 >= 3]` -> "1", as Asterisk evaluates them before the application
    runs (the AppData shows the result). Only what the cti dialplan uses:
    (in)equality, and sums and orderings of integers (the wait deadline of
    cti-wait); anything else stays as written."""
    comparison = _COMPARISON.match(match.group(1))
    if comparison is None:
        arithmetic = _ARITHMETIC.match(match.group(1))
        if arithmetic is None:
            return match.group(1).strip()
        a, operator, b = int(arithmetic.group(1)), arithmetic.group(2), int(arithmetic.group(3))
        if operator in "+-":
            return str(a + b if operator == "+" else a - b)
        held = {">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[operator]
        return "1" if held else "0"
    left, operator, right = (part.strip('"') for part in comparison.groups())
    return "1" if (left == right) == (operator == "=") else "0"


def _pattern(pattern: str) -> re.Pattern[str]:
    """Asterisk extension pattern (`_X.`, `_X!`, `_0X.`) as a regex."""
    out = []
    for char in pattern[1:]:
        out.append(
            {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}.get(
                char, re.escape(char)
            )
        )
    return re.compile("".join(out) + r"\Z")


def _static(extens: dict[str, list[Step]]) -> Lookup:
    compiled = [(name, _pattern(name) if name.startswith("_") else None) for name in extens]

    def lookup(exten: str) -> list[Step] | None:
        for name, regex in compiled:
            if (regex is None and name == exten) or (regex is not None and regex.match(exten)):
                return extens[name]
        return None

    return lookup


CTI_INBOUND = [
    Step("NoOp", "inbound call from ${CALLERID(all)} on DID ${EXTEN}"),
    Step("Set", "CTI_DID=${EXTEN}"),
    Step("Set", "CTI_STATE=queued"),
    # The recordings hard-code `support`; the service a caller was given
    # (Originate Variable CTI_SERVICE) or CTI_DEFAULT_SERVICE reads the same
    # for the default service and lets the server's routing work unchanged.
    Step("UserEvent", "CTIQueued,CtiDid: ${EXTEN},CtiService: ${CTI_SERVICE_OR_DEFAULT}"),
    Step("Goto", "cti-wait,s,1"),
]


def _cti_inbound_agi(agi_url: str) -> list[Step]:
    """[cti-inbound] of dialplans/cti.conf: the server's IVR over FastAGI;
    when it cannot be reached (AGISTATUS FAILURE, no CTI_SERVICE chosen)
    the caller still queues, with the default service."""
    return [
        Step("NoOp", "CTI inbound call from ${CALLERID(all)} on DID ${EXTEN}"),
        Step("Set", "CTI_DID=${EXTEN}"),
        Step("Set", "CTI_STATE=ivr"),
        Step("Answer"),
        Step("AGI", f"{agi_url}/ivr?did=${{EXTEN}}"),
        Step("ExecIf",
             '$["${CTI_SERVICE}" = ""]?Set(CTI_SERVICE=${CTI_DEFAULT_SERVICE})'),
        Step("GotoIf", '$["${CTI_STATE}" = "done"]?done'),
        Step("Set", "CTI_STATE=queued"),
        Step("UserEvent", "CTIQueued,CtiDid: ${EXTEN},CtiService: ${CTI_SERVICE}"),
        Step("Goto", "cti-wait,s,1"),
        Step("Hangup", label="done"),
    ]


CTI_WAIT = [
    Step("NoOp", "waiting for a CTI routing decision"),
    Step("Set", "CTI_STATE=waiting"),
    Step("MusicOnHold", "default,300"),
    Step("UserEvent", "CTIWaitTimeout"),
    Step("Hangup"),
]


def _cti_wait_conf() -> dict[str, list[Step]]:
    """[cti-wait] of dialplans/cti.conf: music between announcements that
    1 gets a callback keeping the caller's place (tests/test_keep_my_place
    checks these steps against the file)."""
    return {
        "s": [
            Step("NoOp", "CTI waiting for a routing decision"),
            Step("Set", "CTI_STATE=waiting"),
            Step("Set", "CTI_WAIT_UNTIL=$[${EPOCH} + ${CTI_WAIT_TIMEOUT}]"),
            Step("GotoIf", "$[${EPOCH} >= ${CTI_WAIT_UNTIL}]?timeout", label="wait"),
            Step("GotoIf", '$["${CTI_DID}" = ""]?hold'),
            Step("Background", "cti/wait-callback-offer"),
            Step("WaitExten", "${CTI_WAIT_ANNOUNCE},m(default)", label="hold"),
            Step("UserEvent", "CTIWaitTimeout,CtiService: ${CTI_SERVICE}", label="timeout"),
            Step("Goto", "cti-wait-timeout,s,1"),
        ],
        "1": [Step("Goto", "cti-wait-offer,s,1")],
        "t": [Step("Goto", "s,wait")],
        "i": [Step("Goto", "s,wait")],
    }


def _cti_wait_offer(agi_url: str) -> list[Step]:
    """[cti-wait-offer] of dialplans/cti.conf: the server's callback offer;
    without a callback stored the caller goes back to waiting."""
    return [
        Step("NoOp", "CTI callback offer for ${CALLERID(num)}"),
        Step("AGI", f"{agi_url}/callback-offer"),
        Step("GotoIf", '$["${CTI_STATE}" = "done"]?done'),
        Step("Goto", "cti-wait,s,wait"),
        Step("Hangup", label="done"),
    ]


CTI_WAIT_TIMEOUT_CONTEXT = [
    Step("NoOp", "CTI wait timeout"),
    Step("Hangup"),
]
CTI_CONNECT = [
    Step("NoOp", "CTI connect ${CHANNEL} to agent ${EXTEN} (CTI_AGENT=${CTI_AGENT})"),
    Step("Set", "CTI_STATE=ringing"),
    # Set(RT=${IF($["${CTI_RING_TIMEOUT}" = ""]?${CTI_DEFAULT_RING_TIMEOUT}:...)})
    Step("Set", "RT=${RING_TIMEOUT_OR_DEFAULT}"),
    Step("UserEvent", "CTIConnecting,CtiAgent: ${EXTEN},CtiRingTimeout: ${RT}"),
    # Dial(${CTI_AGENT_DEVICE},${RT},t): the device the server set, else
    # the agent_interface template (what the recordings dial)
    Step("Dial", "${CTI_AGENT_DEVICE_OR_INTERFACE},${RT},t"),
    Step("Set", "CTI_STATE=waiting"),
    Step("UserEvent", "CTIRona,CtiAgent: ${EXTEN},CtiDialStatus: ${DIALSTATUS}"),
    Step("Goto", "cti-wait,s,1"),
]
CTI_CALLBACK = [
    Step("NoOp", "agent answered, calling customer ${EXTEN}"),
    Step("Set", "CTI_STATE=callback"),
    Step("UserEvent", "CTICallbackDialing,CtiCustomer: ${EXTEN}"),
    Step("Dial", "Local/${EXTEN}@sim-customer,20"),
    Step("UserEvent", "CTICallbackResult,CtiCustomer: ${EXTEN},CtiDialStatus: ${DIALSTATUS}"),
    Step("Hangup"),
]

# [cti-callback-customer] of dialplans/cti.conf: the originated customer
# leg, once answered, dials the agent the server reserved (CTI_AGENT_DEVICE,
# CTI_RING_TIMEOUT set by the Originate); an agent who does not answer sends
# the customer to cti-wait, for the server to offer them again.
CTI_CALLBACK_CUSTOMER = [
    Step("NoOp", "CTI callback ${CTI_CALLBACK_ID}: ${EXTEN} answered, ringing agent ${CTI_AGENT}"),
    Step("Set", "CTI_STATE=ringing"),
    Step("UserEvent", "CTICallbackAnswered,CtiCustomer: ${EXTEN},"
         "CtiCallback: ${CTI_CALLBACK_ID},CtiAgent: ${CTI_AGENT},CtiService: ${CTI_SERVICE}"),
    Step("Dial", "${CTI_AGENT_DEVICE},${CTI_RING_TIMEOUT},t"),
    Step("Set", "CTI_STATE=waiting"),
    Step("UserEvent", "CTIRona,CtiAgent: ${CTI_AGENT},CtiDialStatus: ${DIALSTATUS},"
         "CtiCallback: ${CTI_CALLBACK_ID}"),
    Step("Goto", "cti-wait,s,1"),
]


def _ivr_inbound(agi_url: str) -> dict[str, list[Step]]:
    return {
        "0140000010": [
            Step("NoOp", "IVR call from ${CALLERID(all)}"),
            Step("Answer"),
            Step("AGI", f"{agi_url}/ivr?flow=main,${{EXTEN}}"),
            Step(
                "UserEvent",
                "CTIIvrDone,CtiAgiStatus: ${AGISTATUS},CtiIvrChoice: ${IVR_CHOICE},"
                "CtiIvrAccount: ${IVR_ACCOUNT}",
            ),
            Step("Hangup"),
        ],
        "0140000011": [
            Step("NoOp", "IVR call (error/hangup flow) from ${CALLERID(all)}"),
            Step("Answer"),
            Step("AGI", f"{agi_url}/ivr?flow=errors,${{EXTEN}},second arg"),
            Step("UserEvent", "CTIIvrDone,CtiAgiStatus: ${AGISTATUS}"),
            Step("Hangup"),
        ],
    }


SCRIPTED_CALLERS = {
    # presses 2 after 3 s, then 1234# 4 s later (recording 08, agi1)
    "ivr": [
        Step("NoOp", "sim caller for the IVR"),
        Step("Answer"),
        Step("Wait", "3"),
        Step("SendDTMF", "2"),
        Step("Wait", "4"),
        Step("SendDTMF", "1234#"),
        Step("Wait", "30"),
        Step("Hangup"),
    ],
    # hangs up in the middle of the AGI conversation (recording 08, agi2)
    "ivr-hangup": [
        Step("NoOp", "sim caller hanging up during the IVR"),
        Step("Answer"),
        Step("Wait", "4"),
        Step("Hangup"),
    ],
}
_CALLER = re.compile(r"(\d+)(?:-([0-9*#wW]+))?\Z")


def _sim_caller(exten: str) -> list[Step] | None:
    if exten in SCRIPTED_CALLERS:
        return SCRIPTED_CALLERS[exten]
    match = _CALLER.match(exten)
    if match is None:
        return None
    patience, digits = match.group(1), match.group(2)
    steps = [Step("NoOp", f"sim caller, patience {patience} s"), Step("Answer")]
    if digits:
        # a generated caller keying digits 3 s after answer (an IVR menu)
        rest = max(0, int(patience) - 3)
        steps += [Step("Wait", "3"), Step("SendDTMF", digits), Step("Wait", str(rest))]
    else:
        steps.append(Step("Wait", patience))
    return [*steps, Step("Hangup")]


def _fmt(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _phones(phones: dict[str, Phone], rng: random.Random) -> Lookup:
    def lookup(exten: str) -> list[Step] | None:
        phone = phones.get(exten)
        if phone is None:
            return None
        pickup, talk = phone.outcome(rng)
        return _phone_steps(phone, pickup, talk)

    return lookup


def _phone_steps(phone: Phone, pickup: Pickup, talk: float) -> list[Step]:
    head = Step("NoOp", phone.label)
    if pickup is Pickup.BUSY:
        return [head, Step("Busy", "10")]
    if pickup is Pickup.CONGESTION:
        return [head, Step("Congestion", "10")]
    ring = phone.ring_s
    if pickup is Pickup.NEVER:
        # rings for ring_s (300 s for Dave, 120 s for 0688888888), then gives up
        return [head, Step("Ringing"), Step("Wait", _fmt(max(ring, 120))), Step("Hangup")]
    return [
        head,
        Step("Ringing"),
        Step("Wait", _fmt(ring)),
        Step("Answer"),
        Step("Wait", _fmt(talk)),
        Step("Hangup"),
    ]


# [queue-inbound] (`exten => _[a-z].`): app_queue entry of recordings 04, 05;
# Originate Variable CTI_VIP=1 gives the caller QUEUE_PRIO=10.
QUEUE_INBOUND = [
    Step("NoOp", "queue call from ${CALLERID(all)} to queue ${EXTEN}"),
    Step("ExecIf", '$["${CTI_VIP}" = "1"]?Set(QUEUE_PRIO=10)'),
    Step("Queue", "${EXTEN},t,,,300"),
    Step("UserEvent", "CTIQueueExit,CtiQueue: ${EXTEN},CtiQueueStatus: ${QUEUESTATUS}"),
]


def _queue_inbound(exten: str) -> list[Step] | None:
    return QUEUE_INBOUND if len(exten) > 1 and "a" <= exten[0] <= "z" else None


# [cti-spy] of dialplans/cti.conf: the supervisor's phone, once answered,
# spies on CTI_SPY_TARGET with the options of CTI_SPY_MODE.
CTI_SPY = [
    Step("NoOp", "CTI spy on ${CTI_SPY_TARGET} mode ${CTI_SPY_MODE}"),
    Step("Answer"),
    Step("ChanSpy", "${CTI_SPY_TARGET},${CTI_SPY_MODE}E"),
    Step("Hangup"),
]


class Dialplan:
    """Context name -> extension lookup. `agent_interface` is the dial
    string template `cti-connect` uses for an agent when the server did not
    set CTI_AGENT_DEVICE (`Local/{exten}@sim-agent` by default, like the
    recordings); `inbound_agi` runs the IVR of dialplans/cti.conf in
    `cti-inbound` instead of queueing at once as the recordings do, and
    its `cti-wait` (announcements, 1 for the callback offer) instead of the
    recordings' plain music on hold."""

    def __init__(
        self,
        population: Population,
        rng: random.Random,
        agi_url: str = "agi://127.0.0.1:4573",
        agent_interface: str = "Local/{exten}@sim-agent",
        *,
        inbound_agi: bool = False,
    ) -> None:
        self.agent_interface = agent_interface
        self._rng = rng
        inbound = _cti_inbound_agi(agi_url) if inbound_agi else CTI_INBOUND
        # The server dials callback customers in E.164 (cti.conf matches
        # `_+X.`): each national French number answers in its +33 form too.
        customers = dict(population.customers)
        customers.update({f"+33{number[1:]}": phone for number, phone in customers.items()
                          if number.startswith("0") and len(number) == 10})
        self._phone_numbers = {
            "sim-agent": frozenset(population.agents),
            "sim-customer": frozenset(customers),
        }
        waiting: dict[str, Lookup] = {
            "cti-wait": _static({"s": CTI_WAIT}),
        }
        if inbound_agi:
            waiting = {
                "cti-wait": _static(_cti_wait_conf()),
                "cti-wait-offer": _static({"s": _cti_wait_offer(agi_url)}),
                "cti-wait-timeout": _static({"s": CTI_WAIT_TIMEOUT_CONTEXT}),
            }
        # Phones with a script play it one call at a time: their outcome is
        # drawn once per channel (the PBX looks the steps up at every
        # priority), the n-th call of the number taking the n-th entry.
        self._scripted = {
            "sim-agent": {n: p for n, p in population.agents.items() if p.script},
            "sim-customer": {n: p for n, p in customers.items() if p.script},
        }
        self._script_calls: dict[str, int] = {}
        self._script_steps: OrderedDict[str, list[Step]] = OrderedDict()
        self._contexts: dict[str, Lookup] = {
            "cti-inbound": _static({"_X.": inbound}),
            **waiting,
            "cti-connect": _static({"_X.": CTI_CONNECT}),
            "cti-callback": _static({"_0X.": CTI_CALLBACK, "_+X.": CTI_CALLBACK}),
            "cti-callback-customer": _static({"_+X.": CTI_CALLBACK_CUSTOMER}),
            "cti-spy": _static({"s": CTI_SPY}),
            "queue-inbound": _queue_inbound,
            "ivr-inbound": _static(_ivr_inbound(agi_url)),
            "sim-caller": _sim_caller,
            "sim-agent": _phones(dict(population.agents), rng),
            "sim-customer": _phones(customers, rng),
        }

    def lookup(self, context: str, exten: str, channel: str | None = None) -> list[Step] | None:
        """The steps of `exten` in `context`; `channel` (its unique id) when
        a channel runs them, so that a scripted phone's call is drawn once."""
        phones = self._scripted.get(context)
        scripted = None if phones is None else phones.get(exten)
        if scripted is not None and channel is not None:
            return self._scripted_call(scripted, channel)
        lookup = self._contexts.get(context)
        return lookup(exten) if lookup is not None else None

    def _scripted_call(self, phone: Phone, channel: str) -> list[Step]:
        steps = self._script_steps.get(channel)
        if steps is None:
            # +33 forms share the national number's count
            number = phone.number
            call = self._script_calls.get(number, 0)
            self._script_calls[number] = call + 1
            steps = _phone_steps(phone, *phone.outcome(self._rng, call))
            self._script_steps[channel] = steps
            if len(self._script_steps) > _SCRIPTED_KEPT:
                self._script_steps.popitem(last=False)
        return steps

    def priority(self, context: str, exten: str, label: str) -> int | None:
        """The priority a Goto target names: a number or a step's label."""
        if label.isdigit():
            return int(label)
        steps = self.lookup(context, exten) or []
        return next((n for n, step in enumerate(steps, 1) if step.label == label), None)

    def expressions(self, chan: Channel, globals_: Mapping[str, str]) -> dict[str, str]:
        """The `${IF(...)}` values the real dialplan computes: the ring
        timeout of cti-connect, the device it dials and the service of a
        caller who was given none."""
        variables = chan.variables
        return {
            "RING_TIMEOUT_OR_DEFAULT": variables.get("CTI_RING_TIMEOUT", "")
            or globals_.get("CTI_DEFAULT_RING_TIMEOUT", "10"),
            "CTI_AGENT_DEVICE_OR_INTERFACE": variables.get("CTI_AGENT_DEVICE", "")
            or self.agent_interface.format(exten=chan.exten),
            "CTI_SERVICE_OR_DEFAULT": variables.get("CTI_SERVICE", "")
            or globals_.get("CTI_DEFAULT_SERVICE", ""),
        }

    def exists(self, context: str, exten: str) -> bool:
        # The sim-* phones draw their behaviour per call: probing must not
        # consume randomness, so they are checked by number only.
        if context in self._phone_numbers:
            return exten in self._phone_numbers[context]
        return self.lookup(context, exten) is not None
