"""The core of `cti customers import FILE`: customers from CSV or JSON lines,
read row by row, each row parsed by the Customer model and written on its
own (atomically, with its indexes) or rejected with its row, field and
reason. A rejected row writes nothing; the rows around it still import.

CSV: a header row naming the columns (`id`, `name`, `phones`, `account`,
`tier`, `notes`, `balance`, `currency`, `pin_hash` or `pin`, and
`segment.<key>` for each segment value); phones separated by `;` or `|`;
`,`, `;` or tab as the delimiter (read from the header); an empty cell is
an absent value. JSON lines: one object per line with the same keys
(`segment` as an object, `phones` as a list). A `pin` is hashed on the way
in and never stored. Lines are at most 64 KiB; the file is UTF-8 (a BOM
is allowed).
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import structlog
from pydantic import ValidationError

from cti.customers.errors import CustomerConflict
from cti.customers.models import Customer, FieldProblem, field_problems, parse_customer
from cti.customers.pins import InvalidPin, hash_pin
from cti.customers.store import CustomerStore

log = structlog.get_logger(__name__)

MAX_LINE = 64 * 1024
BATCH = 100
_FIELDS = frozenset(Customer.model_fields) | {"pin"}
_REQUIRED = frozenset({"id", "name"})
_PHONE_SEPARATOR = re.compile(r"[;|]")
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_DECIMAL = re.compile(r"-?[0-9]+\.[0-9]+")

Format = Literal["csv", "jsonl"]


class ImportRefused(Exception):
    """The file as a whole cannot be imported (unreadable, unknown columns,
    not UTF-8...). Rows before the problem stay imported."""

    code = "customer_import_refused"


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that was not imported: `row` is the line of the file it starts
    on (1 is the CSV header), each problem names a field and a reason."""

    row: int
    customer: str | None
    problems: tuple[FieldProblem, ...]

    def __str__(self) -> str:
        who = f" ({self.customer})" if self.customer else ""
        return f"row {self.row}{who}: " + "; ".join(str(problem) for problem in self.problems)


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """How far the import is: rows read so far, and bytes read out of the
    file's size (for a progress bar)."""

    rows: int
    imported: int
    rejected: int
    bytes_read: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """Rows read (blank lines aside), imported, and rejected."""

    read: int
    imported: int
    rejected: int


async def import_file(path: Path, store: CustomerStore, *, region: str | None,
                      report: Callable[[RejectedRow], None],
                      progress: Callable[[ImportProgress], None] | None = None,
                      every: int = 1000, file_format: Format | None = None) -> ImportSummary:
    """Import customers from `path` (CSV or JSON lines, from the suffix
    `.csv` / `.jsonl` / `.ndjson`, else from the first character). National
    numbers are read in `region`. `report` gets each rejected row, in row
    order, at most a batch (100 rows) after it is read; `progress` is
    called every `every` rows and once at the end. `ImportRefused` when the
    file cannot be read on (the rows before stay imported)."""
    if every < 1:
        raise ValueError("every must be at least 1")
    try:
        total = (await asyncio.to_thread(path.stat)).st_size
    except OSError as exc:
        raise ImportRefused(f"cannot read {path}: {exc.strerror}") from exc
    # Lines come from a local file through an 8 KiB buffer: short reads that
    # stay on the loop, between the Redis round trips that dominate.
    with path.open("rb") as raw:
        kind = file_format or _format(path, raw.peek(64)[:64])
        lines = _Lines(raw)
        rows = _csv_rows(lines) if kind == "csv" else _json_rows(lines)
        importer = _Importer(store, region, report)
        try:
            for row, fields in rows:
                await importer.take(row, fields)
                if progress is not None and importer.read % every == 0:
                    await importer.flush()
                    progress(importer.progress(raw.tell(), total))
        except ImportRefused as exc:
            await importer.flush()  # the rows before the problem stand
            log.warning("customers.import_refused", file=str(path), reason=str(exc),
                        read=importer.read, imported=importer.imported)
            raise
        await importer.flush()
    if progress is not None:
        progress(importer.progress(total, total))
    summary = ImportSummary(importer.read, importer.imported, importer.rejected)
    log.info("customers.imported", file=str(path), format=kind, read=summary.read,
             imported=summary.imported, rejected=summary.rejected)
    return summary


class _Importer:
    """Parses rows and writes the valid ones in batches of pipelined,
    individually atomic writes; rejections are reported in row order."""

    def __init__(self, store: CustomerStore, region: str | None,
                 report: Callable[[RejectedRow], None]) -> None:
        self._store = store
        self._region = region
        self._report = report
        self._pending: list[tuple[int, Customer | RejectedRow]] = []
        self.read = 0
        self.imported = 0
        self.rejected = 0

    async def take(self, row: int, fields: Mapping[str, Any] | FieldProblem) -> None:
        self.read += 1
        self._pending.append((row, await self._parse(row, fields)))
        if len(self._pending) >= BATCH:
            await self.flush()

    async def _parse(self, row: int, fields: Mapping[str, Any] | FieldProblem,
                     ) -> Customer | RejectedRow:
        if isinstance(fields, FieldProblem):
            return RejectedRow(row, None, (fields,))
        customer_id = fields.get("id")
        who = customer_id if isinstance(customer_id, str) else None
        problems: list[FieldProblem] = []
        if "pin" in fields:
            fields = dict(fields)
            pin = fields.pop("pin")
            try:
                if "pin_hash" in fields:
                    raise InvalidPin("give pin or pin_hash, not both")
                if not isinstance(pin, str):
                    raise InvalidPin("a PIN is 4 to 8 digits, as text")
                # PBKDF2 takes milliseconds of CPU: off the event loop.
                fields["pin_hash"] = await asyncio.to_thread(hash_pin, pin)
            except InvalidPin as exc:
                problems.append(FieldProblem("pin", str(exc)))
        try:
            customer = parse_customer(fields, region=self._region)
        except ValidationError as exc:
            problems[:0] = field_problems(exc)
        if problems:
            return RejectedRow(row, who, tuple(problems))
        return customer

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        customers = [parsed for _, parsed in pending if isinstance(parsed, Customer)]
        conflicts = iter(await self._store.put_many(customers))
        for row, parsed in pending:
            if isinstance(parsed, RejectedRow):
                self._reject(parsed)
                continue
            conflict = next(conflicts)
            if conflict is None:
                self.imported += 1
            else:
                self._reject(RejectedRow(row, parsed.id, (_conflict_problem(parsed, conflict),)))

    def progress(self, bytes_read: int, total: int) -> ImportProgress:
        return ImportProgress(self.read, self.imported, self.rejected, min(bytes_read, total),
                              total)

    def _reject(self, rejected: RejectedRow) -> None:
        self.rejected += 1
        self._report(rejected)


def _conflict_problem(customer: Customer, conflict: CustomerConflict) -> FieldProblem:
    field = conflict.field
    if conflict.field == "phones" and conflict.value in customer.phones:
        field = f"phones.{customer.phones.index(conflict.value)}"
    return FieldProblem(field, f"{conflict.value} already belongs to customer {conflict.owner}")


def _format(path: Path, head: bytes) -> Format:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    return "jsonl" if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{") else "csv"


class _Lines:
    """The file's lines, decoded one at a time, so a byte that is not UTF-8
    stops the import at its own line; `number` is the last line read. A
    line longer than `MAX_LINE` bytes comes as None (its bytes skipped)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.number = 0

    def __iter__(self) -> Iterator[str | None]:
        while chunk := self._raw.readline(MAX_LINE + 1):
            self.number += 1
            if len(chunk) > MAX_LINE and not chunk.endswith(b"\n"):
                while chunk and not chunk.endswith(b"\n"):
                    chunk = self._raw.readline(MAX_LINE)
                yield None
                continue
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ImportRefused(f"line {self.number}: not UTF-8 (byte {exc.start + 1}:"
                                    f" {exc.reason})") from exc
            yield text.removeprefix("\ufeff") if self.number == 1 else text


# -- CSV ---------------------------------------------------------------------


def _csv_rows(lines: _Lines) -> Iterator[tuple[int, Mapping[str, Any] | FieldProblem]]:
    source = _csv_source(lines)
    header_line = next(source, "")
    if not header_line.strip():
        raise ImportRefused("the CSV file has no header row")
    delimiter = max(",;\t", key=header_line.count)
    columns = [column.strip() for column in next(csv.reader([header_line],
                                                            delimiter=delimiter))]
    _check_columns(columns)
    reader = csv.reader(source, delimiter=delimiter)
    while True:
        start = lines.number + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportRefused(f"row {start}: not CSV ({exc})") from exc
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(columns):
            yield start, FieldProblem("", f"{len(cells)} cells for {len(columns)} columns")
            continue
        yield start, _csv_fields(columns, cells)


def _csv_source(lines: _Lines) -> Iterator[str]:
    for line in lines:
        if line is None:
            # A line cannot be skipped in CSV: it may be half of a row.
            raise ImportRefused(f"line {lines.number}: longer than {MAX_LINE} bytes")
        yield line


def _check_columns(columns: list[str]) -> None:
    unknown = [column for column in columns
               if column not in _FIELDS and not column.startswith("segment.")]
    if unknown:
        raise ImportRefused(f"unknown columns: {', '.join(unknown)}"
                            f" (known: {', '.join(sorted(_FIELDS))}, segment.<key>)")
    missing = sorted(_REQUIRED - set(columns))
    if missing:
        raise ImportRefused(f"missing columns: {', '.join(missing)}")
    repeated = sorted({column for column in columns if columns.count(column) > 1})
    if repeated:
        raise ImportRefused(f"repeated columns: {', '.join(repeated)}")


def _csv_fields(columns: list[str], cells: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    segment: dict[str, Any] = {}
    for column, cell in zip(columns, cells, strict=True):
        value = cell.strip()
        if not value:
            continue
        if column.startswith("segment."):
            segment[column.removeprefix("segment.")] = _number_or_text(value)
        elif column == "phones":
            fields["phones"] = [phone.strip() for phone in _PHONE_SEPARATOR.split(value)
                                if phone.strip()]
        else:
            fields[column] = cell if column == "notes" else value
    if segment:
        fields["segment"] = segment
    return fields


def _number_or_text(value: str) -> str | int | float:
    if _INTEGER.fullmatch(value):
        return int(value)
    if _DECIMAL.fullmatch(value):
        return float(value)
    return value


# -- JSON lines --------------------------------------------------------------


def _json_rows(lines: _Lines) -> Iterator[tuple[int, Mapping[str, Any] | FieldProblem]]:
    for line in lines:
        if line is None:
            yield lines.number, FieldProblem("", f"line longer than {MAX_LINE} bytes")
            continue
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as exc:
            yield lines.number, FieldProblem("", f"not JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(fields, dict):
            yield lines.number, FieldProblem("", "a line must hold one JSON object")
            continue
        yield lines.number, fields
