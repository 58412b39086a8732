"""Fixtures of the insights' tests: an insights worker on the app's stores, its models on
the stand-in endpoint, and the workflow worker's queue drained on demand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI

from syntera.insights.classifier import PrototypeClassifier
from syntera.insights.store import InsightStore
from syntera.insights.worker import InsightWorker
from tests.agents.conftest import (  # noqa: F401  (fixtures)
    app_on_standin,
    endpoint,
    standin,
    standin_server,
)
from tests.workflows.conftest import drain, make_workflow, worker  # noqa: F401  (fixtures)

MakeInsightWorker = Callable[..., InsightWorker]


@pytest.fixture
def make_insight_worker(
    app_on_standin: FastAPI,  # noqa: F811  (the fixture imported above)
    owner_conn: psycopg.Connection,
) -> MakeInsightWorker:
    """An insights worker (settings overridable) on an empty queue: the jobs other tests'
    messages left are not this test's."""
    owner_conn.execute("DELETE FROM syntera.insight_jobs")
    app = app_on_standin

    def make(**settings: Any) -> InsightWorker:
        return InsightWorker(
            app.state.stores.postgres, app.state.settings.model_copy(update=settings),
            InsightStore(app.state.conversations), PrototypeClassifier(app.state.kb.embedder),
            app.state.models, cache=app.state.cache, events=app.state.publisher,
        )  # fmt: skip

    return make
