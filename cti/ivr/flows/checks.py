"""Rules that need the whole flow: unique step ids, gotos that land on a
step, every step reachable from the start, every step able to reach an end
(handoff, hangup, transfer, callback), prompts that cover the flow's
language, references to fields and data that some step sets.

Unreachable steps are refused, not warned about: in a flow edited by hand
they are nearly always a misspelt goto, and a refused reload costs nothing
(the previous version keeps running).

Each problem carries its location in the YAML document (`steps`, index,
field...), which the loader turns into a line number.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cti.ivr.flows.models import (
    Collect,
    Flow,
    Identify,
    Menu,
    SetData,
    references,
)

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    loc: Loc
    message: str


def check_flow(flow: Flow) -> list[Problem]:
    problems = _ids_and_gotos(flow)
    if not problems:
        # Graph rules only mean something once every edge lands somewhere.
        problems += _reachability(flow)
    problems += _prompt_languages(flow)
    problems += _references(flow)
    return problems


def _ids_and_gotos(flow: Flow) -> list[Problem]:
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for index, step in enumerate(flow.steps):
        if step.id in first:
            problems.append(Problem(("steps", index, "id"),
                                    f"duplicate step id {step.id!r} "
                                    f"(already used by steps[{first[step.id]}])"))
        else:
            first[step.id] = index
    if flow.start is not None and flow.start not in first:
        problems.append(Problem(("start",), f"start step {flow.start!r} does not exist"))
    for index, step in enumerate(flow.steps):
        for loc, target in step.edges():
            if target not in first:
                problems.append(Problem(("steps", index, *loc),
                                        f"step {step.id!r} goes to unknown step {target!r}"))
    return problems


def _successors(flow: Flow) -> dict[str, list[str]]:
    return {step.id: [target for _, target in step.edges()] for step in flow.steps}


def _reachability(flow: Flow) -> list[Problem]:
    problems: list[Problem] = []
    successors = _successors(flow)
    seen = {flow.start_id}
    queue = deque([flow.start_id])
    while queue:
        for target in successors[queue.popleft()]:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    for index, step in enumerate(flow.steps):
        if step.id not in seen:
            problems.append(Problem(("steps", index, "id"),
                                    f"step {step.id!r} is unreachable from the start step "
                                    f"{flow.start_id!r}"))

    # Backwards from the ends: a step that cannot get there would keep the
    # caller forever (or until the step budget ends the call in error).
    predecessors: dict[str, list[str]] = {step.id: [] for step in flow.steps}
    for source, targets in successors.items():
        for target in targets:
            predecessors[target].append(source)
    can_end = {step.id for step in flow.steps if step.terminal}
    queue = deque(can_end)
    while queue:
        for source in predecessors[queue.popleft()]:
            if source not in can_end:
                can_end.add(source)
                queue.append(source)
    stuck = [step.id for step in flow.steps if step.id not in can_end]
    reported: set[str] = set()
    index_of = {step.id: i for i, step in enumerate(flow.steps)}
    for step_id in stuck:
        if step_id in reported:
            continue
        cycle = _cycle_from(step_id, successors)
        reported.update(cycle)
        path = " -> ".join([*cycle, cycle[0]])
        problems.append(Problem(("steps", index_of[cycle[0]], "id"),
                                f"loop with no exit: {path} never reaches a handoff, "
                                "hangup, transfer or callback"))
    return problems


def _cycle_from(start: str, successors: dict[str, list[str]]) -> list[str]:
    """From a step that cannot end, follow edges (all of which also cannot
    end) until a step repeats: that is the loop to show."""
    path: list[str] = []
    position: dict[str, int] = {}
    current = start
    while current not in position:
        position[current] = len(path)
        path.append(current)
        current = successors[current][0]
    return path[position[current]:]


def _prompt_languages(flow: Flow) -> list[Problem]:
    problems: list[Problem] = []
    for index, step in enumerate(flow.steps):
        for loc, prompt in step.prompts():
            languages = prompt.languages()
            if "*" not in languages and flow.language not in languages:
                problems.append(Problem(("steps", index, *loc),
                                        f"prompt has no sound for the flow language "
                                        f"{flow.language!r} (has {', '.join(sorted(languages))})"))
    return problems


def _references(flow: Flow) -> list[Problem]:
    collected = {step.into for step in flow.steps if isinstance(step, Collect)}
    menus = {step.id for step in flow.steps if isinstance(step, Menu)}
    data_keys = {key for step in flow.steps if isinstance(step, SetData) for key in step.data}
    known = {"fields": collected, "choice": menus, "data": data_keys}
    what = {"fields": "no collect step fills field", "choice": "no menu step is named",
            "data": "no set_data step sets"}
    problems: list[Problem] = []
    for index, step in enumerate(flow.steps):
        if isinstance(step, Identify) and step.account_field is not None \
                and step.account_field not in collected:
            problems.append(Problem(("steps", index, "account_field"),
                                    f"{what['fields']} {step.account_field!r}"))
        for loc, template in step.templates():
            for root, name in references(template):
                if root in known and name not in known[root]:
                    problems.append(Problem(("steps", index, *loc),
                                            f"{what[root]} {name!r} (in {template!r})"))
    return problems
