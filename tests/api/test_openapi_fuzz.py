"""Schemathesis against /openapi.json, signed in as a company member: every operation of
/v1 gets generated valid and invalid requests, and no answer may be a 5xx or disagree with
the documented status codes, media types and schemas."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI

from tests.api_fixtures import AuthHeaders, MakeTenant

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


@pytest.mark.slow
# Every /v1 operation 30 times, one worker: past the suite's 300 s on a loaded machine
# once the inbox's operations joined; the run's own limit below is 900 s.
@pytest.mark.timeout(900)
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    live_server: str,
    app: FastAPI,
    auth: AuthHeaders,
    make_tenant: MakeTenant,
) -> None:
    tenant = await make_tenant()
    authorization = auth(tenant.owner)["Authorization"]
    schemathesis = Path(sys.executable).with_name("st")
    process = await asyncio.create_subprocess_exec(
        *[
            str(schemathesis), "run", f"{live_server}/openapi.json",
            "--checks", CHECKS,
            "--header", f"Authorization: {authorization}",
            "--include-path-regex", "^/v1/",
            # Deleting one's own company ends the run's tenant for every later operation.
            "--exclude-name", "DELETE /v1/companies/current",
            # Event streams do not end by themselves (their inputs: tests/events).
            "--exclude-name", "GET /v1/events",
            "--exclude-name", "GET /v1/public/conversations/{conversation_id}/events",
            "--max-examples", "30",
            "--seed", "20261125",
            # One worker: with two, CPython 3.11's ast.parse (which hypothesis calls to
            # describe filters) sometimes fails with "AST constructor recursion depth
            # mismatch", a thread-safety bug of the interpreter, not a finding.
            "--workers", "1",
        ],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await asyncio.wait_for(process.communicate(), timeout=900))[0].decode()
    assert process.returncode == 0, output[-6000:]
    v1_operations = sum(
        len(operations) for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1/")
    )  # fmt: skip
    assert f"Tested: {v1_operations - 3}" in output, output[-3000:]
