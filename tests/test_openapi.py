"""The OpenAPI documents: every route described, every command body with an example."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from runtime.config import Settings
from services.followup.bootstrap import bootstrap as followup
from services.intake.bootstrap import bootstrap as intake
from services.routing.bootstrap import bootstrap as routing


@pytest.fixture(params=[intake, routing, followup], ids=["intake", "routing", "followup"])
def app(request: pytest.FixtureRequest, tmp_path: Any) -> FastAPI:
    settings = Settings(data_dir=tmp_path, nats_url="nats://127.0.0.1:1")
    built: FastAPI = request.param(settings)
    return built


def test_every_route_is_described_with_problem_responses(app: FastAPI) -> None:
    spec = app.openapi()
    assert spec["info"]["title"].startswith("Baton")
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
            if method in {"post", "put"} and "operations" not in operation.get("tags", []):
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                ref = body["$ref"].split("/")[-1]
                schema = spec["components"]["schemas"][ref]
                assert schema.get("examples"), f"{method.upper()} {path}: body {ref} has no example"
                assert "422" in operation["responses"], f"{method.upper()} {path} does not document 422"


def test_intake_documents_the_commands_of_the_brief() -> None:
    spec = intake(Settings(nats_url="nats://127.0.0.1:1")).openapi()
    paths = set(spec["paths"])
    for expected in [
        "/v1/customers/{customer_id}/contacts",
        "/v1/customers/{customer_id}/contacts/{contact_id}/notes",
        "/v1/customers/{customer_id}/contacts/{contact_id}/close",
        "/v1/customers/{customer_id}/handoffs",
        "/v1/customers/{customer_id}/handoffs/{handoff_id}/accept",
        "/v1/customers/{customer_id}/handoffs/{handoff_id}/decline",
        "/v1/customers/{customer_id}/promises",
        "/v1/customers/{customer_id}/promises/{promise_id}/complete",
        "/v1/customers/{customer_id}/promises/{promise_id}/cancel",
        "/v1/escalations",
        "/v1/escalations/{escalation_id}/acknowledge",
        "/v1/agents/{agent_id}",
        "/v1/agents/{agent_id}/customers",
        "/v1/customers/{customer_id}",
    ]:
        assert expected in paths, expected
