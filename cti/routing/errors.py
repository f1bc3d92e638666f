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
