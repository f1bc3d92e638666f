"""`cti customers import`: CSV and JSON lines read row by row; good rows
are written, bad rows are reported with row, field and reason and write
nothing; progress is reported as rows go by."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import fakeredis
import pytest

from cti.customers import (
    CustomerStore,
    ImportProgress,
    ImportRefused,
    ImportSummary,
    RejectedRow,
    import_file,
    pin_matches,
)


@pytest.fixture
async def store() -> AsyncIterator[CustomerStore]:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    try:
        yield CustomerStore(redis)
    finally:
        await redis.aclose()


async def run(path: Path, store: CustomerStore) -> tuple[ImportSummary, list[RejectedRow]]:
    rejected: list[RejectedRow] = []
    summary = await import_file(path, store, region="FR", report=rejected.append)
    return summary, rejected


def fields(rows: list[RejectedRow]) -> list[tuple[int, str | None, list[str]]]:
    return [(row.row, row.customer, [p.field for p in row.problems]) for row in rows]


CSV = """\
id,name,phones,account,tier,notes,segment.recency_days,segment.rfm,pin
c-1,Léa Petit,01 40 00 00 01;+33140000002,123456,VIP,"Préfère le matin, pas le soir",12,545,4321
c-2,Hugo Roux,0140000003|0140000004,,standard,,300,211,
c-3,,0140000005,12ab,gold,,x,,12
c-4,Eve Thief,0140000002,,,,,,
c-5,"Jules
Durand",0140000006,654321,,"two
lines",,,

c-6,Extra,0140000007,,,,,,,
c-7,Zoé Blanc,+33140000008,,,,2.5,,
"""


async def test_csv_imports_good_rows_and_reports_bad_ones(tmp_path: Path,
                                                          store: CustomerStore) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(CSV, encoding="utf-8")
    summary, rejected = await run(path, store)
    assert summary == ImportSummary(read=7, imported=3, rejected=4)
    # Row = the line the row starts on; the header is line 1.
    assert fields(rejected) == [
        (4, "c-3", ["name", "account", "tier", "pin"]),
        (5, "c-4", ["phones.0"]),
        (6, "c-5", ["name"]),
        (10, None, [""]),
    ]
    assert str(rejected[1]) == "row 5 (c-4): phones.0: +33140000002 already belongs to customer c-1"
    assert str(rejected[3]) == "row 10: row: 10 cells for 9 columns"
    assert ("pin", "a PIN is 4 to 8 digits") in [(p.field, p.reason)
                                                 for p in rejected[0].problems]

    lea = await store.get("c-1")
    assert lea is not None
    assert (lea.phones, lea.account, lea.tier) == (["+33140000001", "+33140000002"], "123456",
                                                   "vip")
    assert lea.segment == {"recency_days": 12, "rfm": 545}
    assert lea.notes == "Préfère le matin, pas le soir"
    assert lea.pin_hash is not None and pin_matches("4321", lea.pin_hash)
    hugo = await store.by_phone("+33140000004")
    assert hugo is not None and hugo.id == "c-2" and hugo.account is None
    zoe = await store.get("c-7")
    assert zoe is not None and zoe.segment == {"recency_days": 2.5}
    # Rejected rows wrote nothing, not even their valid parts.
    for customer in ("c-3", "c-4", "c-5", "c-6"):
        assert await store.get(customer) is None
    assert await store.by_phone("+33140000005") is None
    assert await store.by_phone("+33140000006") is None
    assert await store.by_account("654321") is None


async def test_csv_with_semicolons_and_a_bom_as_excel_writes_it(
        tmp_path: Path, store: CustomerStore) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes("\ufeffid;name;phones;account\r\nc-1;Léa;\"0140000001;0140000002\";1234\r\n"
                     .encode())
    summary, rejected = await run(path, store)
    assert (summary.imported, rejected) == (1, [])
    assert await store.by_phone("+33140000002") is not None


async def test_jsonl_imports_good_lines_and_reports_bad_ones(tmp_path: Path,
                                                             store: CustomerStore) -> None:
    lines = [
        json.dumps({"id": "c-1", "name": "Léa", "phones": ["0140000001"], "tier": "vip",
                    "segment": {"recency_days": 3, "monetary_eur": 1520.5}, "balance": "12.50"}),
        "",
        "{not json",
        json.dumps(["c-2"]),
        json.dumps({"id": "c-3", "name": "Bob", "phones": "0140000003"}),
        json.dumps({"id": "c-4", "name": "Eve", "phones": ["0140000001"], "account": 12345}),
        json.dumps({"id": "c-5", "name": "Ana", "pin": "0007", "pin_hash": "00"}),
        json.dumps({"id": "c-6", "name": "Léo", "pin": "2468", "unknown": 1}),
        json.dumps({"id": "c-7", "name": "Max", "pin": "2468"}),
    ]
    path = tmp_path / "customers.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary, rejected = await run(path, store)
    assert summary == ImportSummary(read=8, imported=2, rejected=6)
    assert fields(rejected) == [
        (3, None, [""]),
        (4, None, [""]),
        (5, "c-3", ["phones"]),
        (6, "c-4", ["account"]),
        (7, "c-5", ["pin_hash", "pin"]),
        (8, "c-6", ["unknown"]),
    ]
    assert rejected[0].problems[0].reason.startswith("not JSON")
    assert rejected[1].problems[0].reason == "a line must hold one JSON object"
    lea = await store.get("c-1")
    assert lea is not None and lea.vip and str(lea.balance) == "12.50"
    assert await store.by_phone("0140000001") == lea  # c-4 took nothing
    max_ = await store.get("c-7")
    assert max_ is not None and max_.pin_hash is not None and pin_matches("2468", max_.pin_hash)


async def test_a_format_without_suffix_is_recognised(tmp_path: Path,
                                                     store: CustomerStore) -> None:
    path = tmp_path / "customers.txt"
    path.write_text('{"id": "c-1", "name": "Léa"}\n', encoding="utf-8")
    summary, _ = await run(path, store)
    assert summary.imported == 1


async def test_an_overlong_json_line_is_rejected_and_the_next_one_read(
        tmp_path: Path, store: CustomerStore) -> None:
    path = tmp_path / "customers.jsonl"
    huge = json.dumps({"id": "c-1", "name": "Léa", "notes": "x" * 70_000})
    path.write_text(huge + "\n" + '{"id": "c-2", "name": "Bob"}\n', encoding="utf-8")
    summary, rejected = await run(path, store)
    assert summary == ImportSummary(read=2, imported=1, rejected=1)
    assert fields(rejected) == [(1, None, [""])]
    assert await store.get("c-2") is not None


async def test_unknown_or_missing_columns_refuse_the_whole_file(
        tmp_path: Path, store: CustomerStore) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("id,name,email\nc-1,Léa,lea@example.org\n", encoding="utf-8")
    with pytest.raises(ImportRefused, match="unknown columns: email"):
        await run(path, store)
    path.write_text("id,phones\nc-1,0140000001\n", encoding="utf-8")
    with pytest.raises(ImportRefused, match="missing columns: name"):
        await run(path, store)
    assert await store.get("c-1") is None


async def test_bytes_that_are_not_utf8_stop_the_import_where_they_are(
        tmp_path: Path, store: CustomerStore) -> None:
    path = tmp_path / "customers.csv"
    path.write_bytes(b"id,name\nc-1,Lea\nc-2,L\xe9a\n")
    with pytest.raises(ImportRefused, match="not UTF-8"):
        await run(path, store)
    assert await store.get("c-1") is not None


async def test_progress_is_reported_every_n_rows_and_at_the_end(
        tmp_path: Path, store: CustomerStore) -> None:
    path = tmp_path / "customers.csv"
    rows = "".join(f"c-{n},Client {n},{'+3314000' + f'{n:04d}'}\n" for n in range(25))
    path.write_text("id,name,phones\n" + rows, encoding="utf-8")
    seen: list[ImportProgress] = []
    summary = await import_file(path, store, region="FR", report=lambda _: None,
                                progress=seen.append, every=10)
    assert [p.rows for p in seen] == [10, 20, 25]
    assert [p.imported for p in seen] == [10, 20, 25]
    assert seen[-1].bytes_read == seen[-1].total_bytes == path.stat().st_size
    assert summary == ImportSummary(read=25, imported=25, rejected=0)
