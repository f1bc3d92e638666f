"""An agent's actions on the routed call they are talking on: send the
caller to another service (an escalation) or to a named colleague, who then
holds the task pinned to them for a while, and hang up. `CallActions` owns
the checks that the call is theirs, the Redirect back to the waiting
context that ends their part, and the pins (released when the pinned agent
stops taking calls or the caller hangs up)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import structlog

from cti.calls.model import Call, CallState
from cti.pbx.commands import Hangup, Redirect
from cti.pbx.errors import PbxError
from cti.routing import (
    Agent,
    AgentNotAvailable,
    AgentState,
    HangupFailed,
    NotAgentsCall,
    Pin,
    Task,
    TransferFailed,
    TransferToSelf,
    UnknownAgent,
    UnknownCall,
    UnknownService,
)
from cti.switchboard.state import SwitchboardState

log = structlog.get_logger(__name__)

# Q.850 normal clearing: what an agent's hang-up tells the caller's side
# (recording 06 ends its calls with Hangup Cause 16).
_NORMAL_CLEARING = 16


class CallActions(SwitchboardState):
    """Transfers, escalations, hang-up and pins: a mixin of the switchboard."""

    def _check_holder(self, call_id: str, by_agent: str) -> Call:
        """The live routed call `by_agent` is talking with, or UnknownCall /
        NotAgentsCall."""
        call = self.tracker.calls.get(call_id)
        if call_id not in self.tasks or call_id in self._detached or call is None:
            raise UnknownCall(call_id)
        holder = self.offers.get(call_id)
        agent = self.agents.get(by_agent)
        if holder != by_agent or agent is None or agent.state is not AgentState.ON_CALL:
            raise NotAgentsCall(call_id, by_agent, holder)
        return call

    def check_transfer(self, call_id: str, service: str, *, by_agent: str) -> None:
        """Raise why `by_agent` cannot send this call to `service` now:
        UnknownCall, NotAgentsCall (not talking with them), UnknownService."""
        self._check_holder(call_id, by_agent)
        if service not in self.center.policy.services:
            raise UnknownService(service)

    def check_transfer_to_agent(self, call_id: str, agent_id: str, *, by_agent: str) -> None:
        """Raise why `by_agent` cannot send this call to agent `agent_id`
        now: as `check_transfer`, or UnknownAgent, TransferToSelf,
        AgentNotAvailable (logged out or paused). A busy agent is fine: the
        caller waits for them (`transfer_to_agent`)."""
        self._check_holder(call_id, by_agent)
        if agent_id == by_agent:
            raise TransferToSelf(by_agent)
        target = self.agents.get(agent_id)
        if target is None:
            raise UnknownAgent(agent_id)
        if target.state in (AgentState.LOGGED_OUT, AgentState.PAUSED):
            raise AgentNotAvailable(agent_id, target.state, target.pause_reason)

    async def transfer_to_service(self, call_id: str, service: str, *, by_agent: str,
                                  note: str | None = None) -> None:
        """Send a caller talking with `by_agent` to another service (an
        escalation is a transfer to the service's `escalation`). The caller
        is redirected to the waiting context, which hangs up the agent's
        leg; the agent's call ends as usual (wrap-up for their service) but
        the call lives on; the task waits again for the new service with its
        original enqueue time and VIP class. Raises as `check_transfer`, or
        TransferFailed when the PBX would not move the caller (nothing
        changed then). `note` is logged; the desk keeps notes for the pop."""
        self.check_transfer(call_id, service, by_agent=by_agent)
        before = self.tasks[call_id]
        task = await self._send_back(call_id, by_agent,
                                     lambda task, now: replace(task, service=service))
        if task is not None:
            log.info("routing.transferred", call_id=call_id, agent_id=by_agent,
                     service_from=before.task.service, service=service, vip=before.vip,
                     with_note=bool(note))

    async def transfer_to_agent(self, call_id: str, agent_id: str, *, by_agent: str,
                                note: str | None = None) -> None:
        """Send a caller talking with `by_agent` to agent `agent_id` (a
        blind transfer by name): as `transfer_to_service`, but the task,
        in its own service with its place and VIP class, is pinned to that
        agent for `transfer_wait_seconds`. It rings them as soon as they are
        free; if they let it ring out, stop taking calls or stay busy past
        the wait, the caller is back in their service's queue. Raises as
        `check_transfer_to_agent`, or TransferFailed."""
        self.check_transfer_to_agent(call_id, agent_id, by_agent=by_agent)
        wait = self.center.transfer_wait_seconds

        def pinned(task: Task, now: float) -> Task:
            return replace(task, pin=Pin(agent_id, by_agent, now, now + wait))

        task = await self._send_back(call_id, by_agent, pinned)
        if task is not None:
            self._pins.setdefault(agent_id, set()).add(call_id)
            log.info("routing.transferred", call_id=call_id, agent_id=by_agent,
                     to_agent=agent_id, service=task.service, vip=task.priority == "vip",
                     wait_s=wait, with_note=bool(note))

    async def _send_back(self, call_id: str, by_agent: str,
                         retask: Callable[[Task, float], Task]) -> Task | None:
        """Redirect the caller talking with `by_agent` to the waiting
        context and let their task (as `retask` makes it) wait again; the
        agent's part of the call ends. None when the call ended or moved
        while the Redirect was on its way."""
        call = self._check_holder(call_id, by_agent)
        channel = self._customer_channel(call)
        if channel is None:
            raise UnknownCall(call_id)
        # The PBX first: if the Redirect fails the caller is still with the
        # agent, and nothing here must have changed.
        try:
            await self._send(Redirect(channel, self.contexts.wait, "s").to_action())
        except PbxError as exc:
            log.warning("routing.transfer_failed", call_id=call_id, agent_id=by_agent,
                        reason=str(exc))
            raise TransferFailed(call_id, str(exc)) from exc
        info = self.tasks.get(call_id)
        if info is None or self.offers.get(call_id) != by_agent:
            return None
        now = self._clock()
        # The offer is cleared before the task waits again: from here the
        # caller's WAITING change requeues it (`_on_waiting`).
        del self.offers[call_id]
        self._spawn(self._give_back(by_agent, call_id))
        agent = self._end_part(self.agents[by_agent], now)
        task = info.task
        sticky = None if task.preferred_agent == by_agent else task.preferred_agent
        # A pin that brought the caller to this agent is spent.
        task = retask(replace(task, preferred_agent=sticky, pin=None), now)
        self.tasks[call_id] = replace(info, task=task)
        if call.state is CallState.WAITING:
            # The caller reached cti-wait during the Redirect: that WAITING
            # change was ignored while the offer stood; requeue now.
            self._route(task, now)
        self._after_agent(agent, now)
        return task

    async def hang_up(self, call_id: str, *, by_agent: str) -> None:
        """Hang up the caller talking with `by_agent` (AMI Hangup of the
        caller's channel, normal clearing). The call then ends as any call:
        the agent wraps up, the record says the caller did not hang up.
        Raises UnknownCall, NotAgentsCall, or HangupFailed when the PBX
        refused (nothing changed)."""
        call = self._check_holder(call_id, by_agent)
        channel = self._customer_channel(call)
        if channel is None:
            raise UnknownCall(call_id)
        try:
            await self._send(Hangup(channel, cause=_NORMAL_CLEARING).to_action())
        except PbxError as exc:
            log.warning("routing.hangup_failed", call_id=call_id, agent_id=by_agent,
                        reason=str(exc))
            raise HangupFailed(call_id, str(exc)) from exc
        log.info("routing.hung_up", call_id=call_id, agent_id=by_agent)

    def _unpin(self, agent: Agent, now: float) -> None:
        """The agent callers were transferred to stopped taking calls: those
        callers go back to their service's queue at once, with their place."""
        for task_id in sorted(self._pins.pop(agent.id, ())):
            info = self.tasks.get(task_id)
            if info is None or info.task.pin is None or info.task.pin.agent != agent.id:
                continue
            task = replace(info.task, pin=None)
            self.tasks[task_id] = replace(info, task=task)
            log.info("routing.pin_released", call_id=task_id, agent_id=agent.id,
                     state=agent.state.value, reason=agent.pause_reason)
            if self.index.task(task_id) is not None:
                self._route(task, now)

    def _forget_pin(self, call_id: str, task: Task) -> None:
        """The caller of a task pinned to an agent hung up."""
        if task.pin is not None:
            pinned = self._pins.get(task.pin.agent)
            if pinned is not None:
                pinned.discard(call_id)
                if not pinned:
                    del self._pins[task.pin.agent]
