"""The floor as supervisors see it: folds the switchboard's events into
today's interval tallies and agent ledgers (the pure `cti.kpi` parts),
lists abandoned calls, writes queue_log lines, and builds the wallboard
view. It keeps today's intervals and abandoned calls in Redis, so a
restart or another node shows today's numbers.

Event handling is synchronous and cheap (it runs inside the routing
shell's listeners); the Redis and file writes are queued and done by the
writer task the feature owns.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from cti.calls.model import Outcome
from cti.kpi import intervals as kpi
from cti.kpi.agents import AgentLedger
from cti.kpi.intervals import Day, Tally
from cti.routing import Agent, AgentState
from cti.switchboard import (
    AgentChanged,
    CallFinished,
    CallHandedOver,
    SwitchboardEvent,
    TaskOffered,
    TaskQueued,
)
from cti.wallboard import queue_log as ql

if TYPE_CHECKING:
    from cti.app import Server

log = structlog.get_logger(__name__)

ABANDONED_KEPT = 1000
KEY_DAYS = 8 * 86_400
CallbacksPending = Callable[[str | None], int]


def day_start(at: float) -> float:
    """Local midnight before `at`: the start of the reporting day."""
    moment = datetime.fromtimestamp(at)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class Floor:
    def __init__(self, server: Server, *, short_abandon_s: float,
                 callbacks_pending: CallbacksPending | None = None,
                 queue_log: ql.QueueLog | None = None) -> None:
        self._server = server
        self._short = short_abandon_s
        self._callbacks_pending = callbacks_pending
        self._queue_log = queue_log
        now = server.clock()
        self.day = Day(day_start(now))
        self.agents = AgentLedger(self.day.day_start)
        self.abandoned: deque[dict[str, Any]] = deque(maxlen=ABANDONED_KEPT)
        self._queued: dict[str, tuple[str, float]] = {}       # call -> (service, queued at)
        self._offer: dict[str, str] = {}                      # agent -> call offered
        self._last_call: dict[str, tuple[str, float]] = {}    # agent -> (service, queued at)
        self._talking: dict[str, tuple[str, float]] = {}      # call -> (agent talking, since)
        self._talked: dict[str, float] = {}                   # call -> talk credited to
        #                                                       agents it was handed from
        self._seen: dict[str, Agent] = {}
        # The board's agent rows, kept between builds: a row is rebuilt only
        # when its agent changed (a new Agent value, an AgentChanged event,
        # a call handled) or it is on another call. agent -> (agent, call, row)
        self._rows: dict[str, tuple[Agent, str | None, dict[str, Any]]] = {}
        self._dirty_agents: set[str] = set()
        self._dirty_keys: set[tuple[str, int]] = set()
        self._new_abandoned: list[dict[str, Any]] = []
        self.changed = asyncio.Event()        # something to write
        self.on_change: Callable[[], None] = lambda: None  # the hub's "board changed"

    # -- the fold ---------------------------------------------------------------------

    def on_event(self, event: SwitchboardEvent) -> None:
        now = self._server.clock()
        self._roll(now)
        if isinstance(event, TaskQueued):
            self._on_queued(event, now)
        elif isinstance(event, TaskOffered):
            self._offer[event.assignment.agent_id] = event.call
        elif isinstance(event, AgentChanged):
            self._dirty_agents.add(event.agent.id)
            self._on_agent(event.agent, now)
        elif isinstance(event, CallFinished):
            self._on_finished(event, now)
        elif isinstance(event, CallHandedOver):
            self._on_handed_over(event)
        self.on_change()

    def _record(self, service: str, queued_at: float, delta: Tally, at: float) -> None:
        start = self.day.record(service, queued_at, delta, at)
        self._dirty_keys.add((service, start))
        self.changed.set()

    def _target(self, service: str) -> float:
        known = self._server.center.policy.services.get(service)
        return known.target.seconds if known is not None else 20.0

    def _on_queued(self, event: TaskQueued, now: float) -> None:
        task = event.info.task
        self._queued[event.call] = (task.service, task.enqueued_at)
        self._record(task.service, task.enqueued_at, kpi.queued(), now)
        waiting = sum(1 for t in self._server.switchboard.index.waiting()
                      if t.service == task.service)
        self._record(task.service, task.enqueued_at, kpi.waiting_seen(max(1, waiting)), now)
        call = self._server.tracker.calls.get(event.call)
        self._line(ql.enter_queue(task.enqueued_at, event.call, task.service,
                                  call.caller_number if call else None))

    def _on_agent(self, agent: Agent, now: float) -> None:
        previous = self._seen.get(agent.id)
        self._seen[agent.id] = agent
        self.agents.state(agent.id, agent.state.value, agent.state_since, agent.pause_reason)
        before = previous.state if previous is not None else AgentState.LOGGED_OUT
        after = agent.state
        since = agent.state_since
        if after is AgentState.ON_CALL and before is not AgentState.ON_CALL:
            self._answered(agent, since)
        if before in (AgentState.RESERVED, AgentState.RINGING) and after in (
                AgentState.AVAILABLE, AgentState.PAUSED):
            call = self._offer.pop(agent.id, None)
            if call is not None and call in self._server.switchboard.tasks:
                self.agents.rang_no_answer(agent.id)
                ring_ms = round(max(0.0, since - (previous.state_since if previous else since))
                                * 1000)
                service = self._queued.get(call, ("NONE", 0.0))[0]
                self._line(ql.ring_no_answer(since, call, service, agent.id, ring_ms))
        if before is AgentState.WRAP_UP and after is not AgentState.WRAP_UP and previous:
            last = self._last_call.pop(agent.id, None)
            wrap = max(0.0, since - previous.state_since)
            self.agents.add_handle_time(agent.id, wrap)
            if last is not None:
                self._record(last[0], last[1], kpi.wrapped_up(wrap), now)
        if after is AgentState.PAUSED and (before is not AgentState.PAUSED or (
                previous is not None and previous.pause_reason != agent.pause_reason)):
            self._line(ql.pause(since, agent.id, agent.pause_reason or ""))
        elif before is AgentState.PAUSED and after is not AgentState.PAUSED:
            self._line(ql.unpause(since, agent.id))
        if before is AgentState.LOGGED_OUT and after is not AgentState.LOGGED_OUT:
            for service in self._services_of(agent):
                self._line(ql.add_member(since, service, agent.id))
        elif after is AgentState.LOGGED_OUT and before is not AgentState.LOGGED_OUT:
            for service in self._services_of(agent):
                self._line(ql.remove_member(since, service, agent.id))

    def _answered(self, agent: Agent, at: float) -> None:
        call = self._offer.pop(agent.id, None)
        queued = self._queued.get(call) if call is not None else None
        if call is None or queued is None:
            return
        self._talking[call] = (agent.id, at)
        service, queued_at = queued
        wait = max(0.0, at - queued_at)
        self._record(service, queued_at, kpi.answered(wait, self._target(service)), at)
        self._line(ql.connect(at, call, service, agent.id, wait))

    def _on_finished(self, event: CallFinished, now: float) -> None:
        record = event.event.record
        queued = self._queued.pop(record.call, None)
        if event.info is None and queued is None:
            return  # never routed: not a queue call
        if queued is None:
            assert event.info is not None
            queued = (event.info.task.service, event.info.task.enqueued_at)
        service, queued_at = queued
        ended = record.ended_at
        # The record names the agent's interface; the floor speaks agent ids.
        talking = self._talking.pop(record.call, None)
        agent = None if talking is None else talking[0]
        talked = self._talked.pop(record.call, 0.0)
        if record.outcome is Outcome.ANSWERED and agent is not None:
            talk = (record.talk_ms or 0) / 1000
            self._record(service, queued_at, kpi.handled(talk), now)
            # The agent who ends the call is credited their own part of it.
            self.agents.handled(agent, max(0.0, talk - talked))
            self._dirty_agents.add(agent)
            self._last_call[agent] = (service, queued_at)
            wait = (record.wait_ms or 0) / 1000
            done = ql.complete_caller if record.hung_up_by_caller else ql.complete_agent
            self._line(done(ended, record.call, service, agent, wait_s=wait, talk_s=talk))
        elif record.outcome is Outcome.ABANDONED:
            wait = max(0.0, ended - queued_at)
            self._record(service, queued_at, kpi.abandoned(wait, self._short), now)
            self._line(ql.abandon(ended, record.call, service, wait))
            if wait >= self._short:
                entry = {"call": record.call, "service": service,
                         "caller_number": record.caller_number,
                         "caller_name": record.caller_name, "queued_at": queued_at,
                         "ended_at": ended, "wait_s": round(wait, 1)}
                self.abandoned.append(entry)
                self._new_abandoned.append(entry)

    def _on_handed_over(self, event: CallHandedOver) -> None:
        """A transfer done on the phone: the agent who handed the call over
        is credited their part of the talk now; the colleague who took it
        talks from here (their part is credited when the call ends)."""
        talking = self._talking.get(event.call)
        if talking is None or talking[0] != event.from_agent:
            return
        part = max(0.0, event.at - talking[1])
        self.agents.handled(event.from_agent, part)
        self._dirty_agents.add(event.from_agent)
        self._talked[event.call] = self._talked.get(event.call, 0.0) + part
        queued = self._queued.get(event.call)
        if queued is not None:
            self._last_call[event.from_agent] = queued
        if event.to_agent is None:
            del self._talking[event.call]
        else:
            self._talking[event.call] = (event.to_agent, event.at)

    def _services_of(self, agent: Agent) -> list[str]:
        return [name for name, service in self._server.center.policy.services.items()
                if all(skill in agent.skills for skill in service.skills)]

    def _line(self, line: str) -> None:
        if self._queue_log is not None:
            self._queue_log.add(line)
            self.changed.set()

    def _roll(self, now: float) -> None:
        """A new day starts with empty tallies (yesterday's stay in Redis)."""
        if now >= self.day.day_start + 86_400 + 3600 or day_start(now) > self.day.day_start:
            self.day = Day(day_start(now))
            self.agents = AgentLedger(self.day.day_start)
            self.abandoned.clear()
            self._rows.clear()

    # -- Redis -------------------------------------------------------------------------

    def _key(self, start: float) -> str:
        return f"cti:kpi:{int(start)}"

    async def load(self) -> None:
        """Read today's intervals and abandoned calls back."""
        redis = self._server.store.redis
        base = self._key(self.day.day_start)
        names = await redis.smembers(f"{base}:intervals")
        for name in sorted(_text(n) for n in names):
            service, _, start = name.rpartition(":")
            values = await redis.hgetall(f"{base}:interval:{name}")
            if values and start.isdigit():
                self.day.load(service, int(start), Tally.from_fields(
                    {_text(k): _text(v) for k, v in values.items()}))
        for raw in await redis.lrange(f"{base}:abandoned", -ABANDONED_KEPT, -1):
            self.abandoned.append(json.loads(raw))
        log.info("wallboard.loaded", intervals=len(names), abandoned=len(self.abandoned))

    async def write(self) -> None:
        """Store the intervals changed since the last write (whole values:
        this node owns today's tallies) and the new abandoned calls."""
        keys, self._dirty_keys = self._dirty_keys, set()
        abandoned, self._new_abandoned = self._new_abandoned, []
        redis = self._server.store.redis
        base = self._key(self.day.day_start)
        if keys or abandoned:
            pipe = redis.pipeline(transaction=False)
            for service, start in keys:
                name = f"{service}:{start}"
                tally = self.day.tallies.get((service, start))
                if tally is None:
                    continue
                values: dict[Any, Any] = tally.as_fields()
                pipe.hset(f"{base}:interval:{name}", mapping=values)
                pipe.expire(f"{base}:interval:{name}", KEY_DAYS)
                pipe.sadd(f"{base}:intervals", name)
            pipe.expire(f"{base}:intervals", KEY_DAYS)
            for entry in abandoned:
                pipe.rpush(f"{base}:abandoned", json.dumps(entry))
            if abandoned:
                pipe.ltrim(f"{base}:abandoned", -ABANDONED_KEPT, -1)
                pipe.expire(f"{base}:abandoned", KEY_DAYS)
            await pipe.execute()
        if self._queue_log is not None:
            await self._queue_log.write()

    # -- the view ------------------------------------------------------------------------

    def board(self) -> dict[str, Any]:
        """The wallboard: figures that change with events only (times are
        given as start times; the page counts the seconds itself)."""
        server = self._server
        now = server.clock()
        self._roll(now)
        current = kpi.interval_of(now)
        waiting_tasks = server.switchboard.index.waiting()
        services = []
        policy = server.center.policy
        for name, service in policy.services.items():
            mine = [t for t in waiting_tasks if t.service == name]
            staff = [a.id for a in server.switchboard.agents.values()
                     if all(skill in a.skills for skill in service.skills)]
            services.append({
                "name": name,
                "target": {"percent": service.target.percent, "seconds": service.target.seconds},
                "interval": self.day.interval(name, current).figures(),
                "today": self.day.today(name).figures(),
                "hour": self.day.sliding_hour(name, now).figures(),
                "waiting": len(mine),
                "oldest_queued_at": min((t.enqueued_at for t in mine), default=None),
                "callbacks_pending": self._pending(name),
                "occupancy": _r(self.agents.occupancy(staff, now), 2),
            })
        overall = {
            "interval": self.day.interval(None, current).figures(),
            "today": self.day.today(None).figures(),
            "hour": self.day.sliding_hour(None, now).figures(),
            "waiting": len(waiting_tasks),
            "oldest_queued_at": min((t.enqueued_at for t in waiting_tasks), default=None),
            "callbacks_pending": self._pending(None),
            "occupancy": _r(self.agents.occupancy(list(server.switchboard.agents), now), 2),
        }
        tasks = server.switchboard.tasks
        waiting = []
        for task in sorted(waiting_tasks, key=lambda t: t.enqueued_at):
            info = tasks.get(task.id)
            call = server.tracker.calls.get(task.id)
            waiting.append({
                "task": task.id, "service": task.service,
                "priority": task.priority or ("vip" if info and info.vip else "standard"),
                "vip": bool(info and info.vip), "queued_at": task.enqueued_at,
                "caller": (call.caller_name or call.caller_number) if call else None,
                "attempts": task.attempts,
            })
        on_call = {agent: call for call, agent in server.switchboard.offers.items()}
        agents = self._agent_rows(on_call)
        chart = [{"start": start, "service_level": _r(t.service_level()),
                  "peak_waiting": t.peak_waiting, "offered": t.offered}
                 for start, t in self.day.series(None)]
        return {
            "interval_start": current, "day_start": self.day.day_start,
            "services": services, "overall": overall, "waiting": waiting,
            "agents": agents, "chart": chart, "abandoned": list(self.abandoned)[-50:],
            "pause_reasons": list(server.center.pause_reasons),
            "priority_classes": sorted(policy.classes),
        }

    def _agent_rows(self, on_call: dict[str, str]) -> list[dict[str, Any]]:
        """One row per agent, by id. Rows are never changed in place (the
        hub compares the last board it sent with this one): a changed
        agent gets a new row."""
        dirty, self._dirty_agents = self._dirty_agents, set()
        agents = self._server.switchboard.agents
        rows = []
        for agent_id in sorted(agents):
            agent = agents[agent_id]
            call = on_call.get(agent_id)
            cached = self._rows.get(agent_id)
            if (cached is None or cached[0] is not agent or cached[1] != call
                    or agent_id in dirty):
                cached = (agent, call, self._agent_row(agent, call))
                self._rows[agent_id] = cached
            rows.append(cached[2])
        if len(self._rows) > len(agents):
            for gone in set(self._rows) - set(agents):
                del self._rows[gone]
        return rows

    def _agent_row(self, agent: Agent, call: str | None) -> dict[str, Any]:
        day = self.agents.agents.get(agent.id)
        handled = day.calls_handled if day is not None else 0
        return {
            "id": agent.id, "name": agent.name, "skills": dict(agent.skills),
            "state": agent.state.value, "reason": agent.pause_reason,
            "since": agent.state_since, "call": call,
            "calls_handled": handled,
            "aht_s": round(day.handle_s / handled, 1) if day is not None and handled else None,
            # ended pauses only: the page adds the running one from `since`
            "pause_by_reason_s": self._pauses(agent.id),
            "ring_no_answer": day.ring_no_answer if day is not None else 0,
        }

    def _pauses(self, agent_id: str) -> dict[str, float]:
        day = self.agents.agents.get(agent_id)
        return {} if day is None else {r: round(s) for r, s in sorted(day.pause_by_reason.items())}

    def _pending(self, service: str | None) -> int:
        if self._callbacks_pending is None:
            return 0
        try:
            return self._callbacks_pending(service)
        except Exception:  # a failing callback count must not blank the wallboard
            log.exception("wallboard.callbacks_count_failed")
            return 0

    def csv(self) -> list[list[str]]:
        iso = {start: datetime.fromtimestamp(start).isoformat(timespec="minutes")
               for (_, start) in self.day.tallies}
        return kpi.csv_rows(self.day, iso)


def _r(value: float | None, digits: int = 4) -> float | None:
    # Occupancy moves with the clock: 2 digits keep it from sending an
    # update on every tick.
    return None if value is None else round(value, digits)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
