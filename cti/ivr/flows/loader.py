"""Loading IVR flows from `dialplans/ivr/*.yaml`: YAML to nodes (kept for
their line numbers), nodes to data, data to a validated `Flow`; every
refusal names the file, the line and the reason. `FlowLibrary` holds the
last good version of each flow and reloads on demand or when a file's
mtime changes; a refused file leaves the running version in place.

A call holds the `FlowVersion` it started with, so a reload never changes
the flow under a call in progress.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from cti.ivr.flows.checks import Loc, Problem, check_flow
from cti.ivr.flows.models import STEP_TYPES, Flow

log = structlog.get_logger(__name__)

SOUND_EXTENSIONS = frozenset({".gsm", ".wav", ".wav16", ".ulaw", ".alaw", ".sln", ".sln16",
                              ".g722", ".g729", ".ogg", ".siren7", ".siren14"})


@dataclass(frozen=True, slots=True)
class FlowProblem:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class FlowError(Exception):
    """A flow file was refused; `problems` are sorted by line."""

    code = "ivr_flow_invalid"

    def __init__(self, file: str, problems: list[FlowProblem]) -> None:
        self.file = file
        self.problems = tuple(sorted(problems, key=lambda p: (p.line, p.column)))
        super().__init__("\n".join(str(problem) for problem in self.problems))

    @property
    def first(self) -> FlowProblem:
        return self.problems[0]


@dataclass(frozen=True, slots=True)
class FlowVersion:
    """One loaded version of a flow: `version` is a hash of the file bytes."""

    name: str
    version: str
    path: Path
    flow: Flow


def parse_flow(text: str, *, file: str, catalogue: Collection[str] | None = None,
               taken_dids: Mapping[str, str] | None = None) -> Flow:
    """Validate one flow document; raise FlowError naming file and lines.
    `taken_dids` maps DIDs other flows already answer to their flow name."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        _refuse_duplicate_keys(root, file)
        data: Any = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        raise FlowError(file, [FlowProblem(file, line, column, f"bad YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise FlowError(file, [FlowProblem(file, 1, 1, f"bad YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if root is None or not isinstance(data, dict):
        raise FlowError(file, [FlowProblem(file, 1, 1,
                                           "a flow is a mapping (fallback_service, steps, ...)")])
    context = {"catalogue": frozenset(catalogue) if catalogue is not None else None}
    try:
        flow = Flow.model_validate(data, context=context)
    except ValidationError as exc:
        raise FlowError(file, [_from_pydantic(error, root, data, file)
                               for error in exc.errors()]) from None
    problems = check_flow(flow)
    for index, did in enumerate(flow.dids):
        owner = (taken_dids or {}).get(did)
        if owner is not None:
            problems.append(Problem(("dids", index),
                                    f"DID {did} is already answered by flow {owner!r}"))
    if problems:
        raise FlowError(file, [_located(problem.loc, _describe(problem.loc, data, problem.message),
                                        root, file) for problem in problems])
    return flow


def load_flow(path: Path, *, catalogue: Collection[str] | None = None,
              taken_dids: Mapping[str, str] | None = None) -> FlowVersion:
    """Read and validate one flow file (OSError if it cannot be read)."""
    return _version_of(path, path.read_bytes(), catalogue, taken_dids)


def _version_of(path: Path, raw: bytes, catalogue: Collection[str] | None,
                taken_dids: Mapping[str, str] | None) -> FlowVersion:
    name = path.stem
    file = str(path)
    if not _valid_name(name):
        raise FlowError(file, [FlowProblem(file, 1, 1, f"bad flow name {name!r}: a file name "
                                                       "of lowercase letters, digits, _ and -")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FlowError(file, [FlowProblem(file, 1, 1, f"not UTF-8: {exc.reason}")]) from None
    flow = parse_flow(text, file=file, catalogue=catalogue, taken_dids=taken_dids)
    return FlowVersion(name, _digest(raw), path, flow)


def _digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:12]


def sound_catalogue(directory: Path) -> frozenset[str]:
    """The prompt names available under an Asterisk sounds directory for one
    language (e.g. /usr/share/asterisk/sounds/en): paths without extension."""
    return frozenset(
        str(path.relative_to(directory).with_suffix(""))
        for path in directory.rglob("*") if path.suffix in SOUND_EXTENSIONS
    )


# -- errors to lines -------------------------------------------------------


def _from_pydantic(error: ErrorDetails, root: yaml.Node, data: Any, file: str) -> FlowProblem:
    loc: Loc = tuple(error["loc"])
    # Inside a discriminated union pydantic adds the tag ("menu") to the
    # location; it is not a key of the document.
    if len(loc) > 2 and loc[0] == "steps" and loc[2] in STEP_TYPES:
        loc = (*loc[:2], *loc[3:])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "union_tag_invalid":
        message = (f"unknown step type {ctx.get('tag')!r} "
                   f"(expected one of: {', '.join(STEP_TYPES)})")
        loc = (*loc, "type")
    elif kind == "union_tag_not_found":
        message = f"step has no type (one of: {', '.join(STEP_TYPES)})"
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        message = "unknown field"
    else:
        message = error["msg"].removeprefix("Value error, ")
        if "key" in ctx:
            # Our validators name the mapping key at fault (a prompt's
            # language, a day of a schedule) so the line is that key's.
            loc = (*loc, str(ctx["key"]))
    return _located(loc, _describe(loc, data, message), root, file)


def _describe(loc: Loc, data: Any, message: str) -> str:
    """Prefix the message with where it is: `step 'main_menu': options.12:`."""
    parts = [p for p in loc if p != "[key]"]
    head = ""
    if len(parts) >= 2 and parts[0] == "steps" and isinstance(parts[1], int):
        steps = data.get("steps") if isinstance(data, dict) else None
        step = steps[parts[1]] if isinstance(steps, list) and parts[1] < len(steps) else None
        step_id = step.get("id") if isinstance(step, dict) else None
        head = f"step {step_id!r}" if isinstance(step_id, str) else f"steps[{parts[1]}]"
        parts = parts[2:]
        if parts == ["id"]:
            parts = []
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    where = ": ".join(text for text in (head, path) if text)
    return f"{where}: {message}" if where else message


def _located(loc: Loc, message: str, root: yaml.Node, file: str) -> FlowProblem:
    node = _node_at(root, loc)
    mark = node.start_mark
    return FlowProblem(file, mark.line + 1, mark.column + 1, message)


def _node_at(root: yaml.Node, loc: Loc) -> yaml.Node:
    """The deepest node the location reaches (a missing key stays on its
    parent, which is where the author must add it)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    node = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and 0 <= part < len(node.value):
            node = node.value[part]
    return node


def _refuse_duplicate_keys(node: yaml.Node | None, file: str) -> None:
    # PyYAML keeps the last of two equal keys without a word; a flow with
    # two `next:` would run something its author did not read.
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                line = key.start_mark.line + 1
                if key.value in seen:
                    raise FlowError(file, [FlowProblem(
                        file, line, key.start_mark.column + 1,
                        f"duplicate key {key.value!r} (first at line {seen[key.value]})")])
                seen[key.value] = line
            _refuse_duplicate_keys(value, file)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, file)


def _valid_name(name: str) -> bool:
    return bool(name) and name[0].isalnum() and all(
        c.islower() or c.isdigit() or c in "_-" for c in name)


# -- the library -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReloadReport:
    loaded: tuple[str, ...]  # new or changed, now running
    refused: tuple[FlowError, ...]  # the previous version (if any) keeps running
    removed: tuple[str, ...]  # file gone


class FlowLibrary:
    """The running version of every flow in one directory."""

    def __init__(self, directory: Path, *, catalogue: Collection[str] | None = None) -> None:
        self.directory = directory
        self._catalogue = frozenset(catalogue) if catalogue is not None else None
        self._flows: dict[str, FlowVersion] = {}
        self._errors: dict[str, FlowError] = {}
        self._stamps: dict[Path, tuple[int, int]] = {}

    @property
    def flows(self) -> Mapping[str, FlowVersion]:
        return dict(self._flows)

    @property
    def errors(self) -> Mapping[str, FlowError]:
        """Files refused at the last (re)load, by flow name."""
        return dict(self._errors)

    def get(self, name: str) -> FlowVersion | None:
        return self._flows.get(name)

    def for_did(self, did: str) -> FlowVersion | None:
        for version in self._flows.values():
            if did in version.flow.dids:
                return version
        return None

    def reload(self) -> ReloadReport:
        """Load new and changed files, drop flows whose file is gone. Safe to
        call at any time: calls in progress keep the version they hold."""
        if not self.directory.is_dir():
            # An unmounted or mistyped directory must not unload every flow.
            log.error("ivr.flow_directory_missing", directory=str(self.directory))
            return ReloadReport((), (), ())
        paths = self._paths()
        self._stamps = {path: self._stamp(path) for path in paths}
        loaded: list[str] = []
        refused: list[FlowError] = []
        names = {path.stem for path in paths}
        removed = sorted(set(self._flows) - names)
        for name in removed:
            del self._flows[name]
            log.warning("ivr.flow_removed", flow=name)
        for name in set(self._errors) - names:
            del self._errors[name]
        for path in paths:
            try:
                raw = path.read_bytes()
                current = self._flows.get(path.stem)
                if current is not None and current.version == _digest(raw):
                    self._errors.pop(path.stem, None)
                    continue
                taken = {did: other.name for other in self._flows.values()
                         if other.name != path.stem for did in other.flow.dids}
                version = _version_of(path, raw, self._catalogue, taken)
            except FlowError as exc:
                self._errors[path.stem] = exc
                refused.append(exc)
                first = exc.first
                log.error("ivr.flow_refused", file=first.file, line=first.line,
                          reason=first.message, problems=len(exc.problems),
                          running=self._flows[path.stem].version
                          if path.stem in self._flows else None)
                continue
            except OSError as exc:
                error = FlowError(str(path), [FlowProblem(str(path), 1, 1,
                                                          f"cannot read: {exc.strerror}")])
                self._errors[path.stem] = error
                refused.append(error)
                log.error("ivr.flow_refused", file=str(path), line=1, reason=str(error))
                continue
            self._flows[version.name] = version
            self._errors.pop(version.name, None)
            loaded.append(version.name)
            log.info("ivr.flow_loaded", flow=version.name, version=version.version,
                     file=str(path), steps=len(version.flow.steps))
        return ReloadReport(tuple(loaded), tuple(refused), tuple(removed))

    def poll(self) -> ReloadReport | None:
        """Reload when a file was added, removed or touched since the last
        load (mtime and size); None when nothing changed."""
        paths = self._paths()
        stamps = {path: self._stamp(path) for path in paths}
        if stamps == self._stamps:
            return None
        return self.reload()

    async def watch(self, interval: float = 2.0) -> None:
        """Poll until cancelled (run it as a task its owner cancels). Flow
        files are small: reading them in the loop costs less than a thread."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.poll()
            except OSError as exc:
                log.error("ivr.flow_watch_failed", directory=str(self.directory),
                          reason=str(exc))

    def _paths(self) -> list[Path]:
        return sorted(path for path in self.directory.glob("*.yaml") if path.is_file())

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        try:
            stat = path.stat()
        except OSError:
            return (0, 0)
        return (stat.st_mtime_ns, stat.st_size)
