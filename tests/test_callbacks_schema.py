"""schemathesis against the callback API's own OpenAPI document: requests
generated from `/api/v1/openapi.json`, valid and invalid (positive and
negative generation), never get a 5xx,
and every answer has a documented status, content type and schema.

One check is left out: "a schema-valid request is accepted". JSON Schema
cannot say which strings are dialable numbers in the allowed countries, so
a schema-valid `{"number": "000"}` is rightly refused with 422 (documented)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.callback_floor import ORIGIN, floor

pytestmark = pytest.mark.timeout(180)


def _exercise(base: str, document: dict[str, Any]) -> list[str]:
    schema = schemathesis.openapi.from_dict(document)
    checked: list[str] = []
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(result.ok(), mode, base, checked)
    return checked


def _run(operation: Any, mode: GenerationMode, base: str, checked: list[str]) -> None:
    @settings(max_examples=30, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy(mode))
    def check(case: Any) -> None:
        response = case.call(base_url=base, headers={"Origin": ORIGIN})
        case.validate_response(response, excluded_checks=[positive_data_acceptance])
        checked.append(f"{operation.label} {response.status_code}")

    check()


async def test_the_callback_api_holds_to_its_openapi_document(tmp_path: Path) -> None:
    async with floor(tmp_path, [{"id": "1001", "skills": {"support": 5}}]) as f:
        status, document = await f.get("/api/v1/openapi.json")
        assert status == 200
        checked = await asyncio.to_thread(_exercise, f.base, document)
    operations = {entry.rsplit(" ", 1)[0] for entry in checked}
    assert len(operations) == sum(len(methods) for methods in document["paths"].values())
    assert all(int(entry.rsplit(" ", 1)[1]) < 500 for entry in checked)
