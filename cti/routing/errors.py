"""The routing error tree: one base with a stable code per error, so the web
layer maps them to JSON and the logs can be queried by code."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cti.routing.agents import AgentState


class RoutingError(Exception):
    code = "routing_error"


class IllegalTransition(RoutingError):
    """An agent state change that the state machine does not allow; the
    message names the transition and both states."""

    code = "illegal_agent_transition"

    def __init__(self, transition: str, source: AgentState, target: AgentState,
                 agent: str | None = None) -> None:
        self.transition = transition
        self.source = source
        self.target = target
        self.agent = agent
        who = f"agent {agent}" if agent is not None else "agent"
        super().__init__(f"{who} cannot {transition}: {source.value} -> {target.value}"
                         " is not an allowed transition")


class InvalidPolicy(RoutingError):
    """A routing policy that cannot be applied (unknown overflow service,
    level out of 1..10, negative aging...)."""

    code = "invalid_routing_policy"


class UnknownService(RoutingError):
    code = "unknown_service"

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(f"no service named {service!r} in the routing policy")


class UnknownPriorityClass(RoutingError):
    code = "unknown_priority_class"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no priority class named {name!r} in the routing policy")


class CallRefused(RoutingError):
    """An agent's action on a call (transfer, hang-up) that cannot be done;
    nothing changed."""

    code = "call_refused"


class UnknownCall(CallRefused):
    code = "unknown_call"

    def __init__(self, call: str) -> None:
        self.call = call
        super().__init__(f"no live routed call {call!r}")


class NotAgentsCall(CallRefused):
    code = "not_your_call"

    def __init__(self, call: str, agent: str, holder: str | None) -> None:
        self.call = call
        self.agent = agent
        self.holder = holder
        talking = "nobody" if holder is None else f"agent {holder}"
        super().__init__(f"call {call!r} is not talking with agent {agent} ({talking} is)")


class TransferRefused(CallRefused):
    """A transfer that cannot be done; nothing changed."""

    code = "transfer_refused"


class TransferFailed(TransferRefused):
    """The PBX did not move the caller (the Redirect failed): the caller
    stays with the agent, nothing changed."""

    code = "transfer_failed"

    def __init__(self, call: str, reason: str) -> None:
        self.call = call
        self.reason = reason
        super().__init__(f"call {call!r}: the Redirect to the waiting context failed: {reason}")


class UnknownAgent(TransferRefused):
    code = "unknown_agent"

    def __init__(self, agent: str) -> None:
        self.agent = agent
        super().__init__(f"no agent {agent!r} in this center")


class TransferToSelf(TransferRefused):
    code = "same_agent"

    def __init__(self, agent: str) -> None:
        self.agent = agent
        super().__init__(f"agent {agent} cannot transfer a call to themselves")


class AgentNotAvailable(TransferRefused):
    """The target agent takes no calls now (logged out, paused)."""

    code = "agent_not_available"

    def __init__(self, agent: str, state: AgentState, reason: str | None = None) -> None:
        self.agent = agent
        self.state = state
        why = f" ({reason})" if reason else ""
        super().__init__(f"agent {agent} takes no calls: {state.value}{why}")


class HangupFailed(CallRefused):
    """The PBX did not hang the caller up (the channel was already gone,
    the link is down): the call is as it was."""

    code = "hangup_failed"

    def __init__(self, call: str, reason: str) -> None:
        self.call = call
        self.reason = reason
        super().__init__(f"call {call!r}: the Hangup failed: {reason}")
