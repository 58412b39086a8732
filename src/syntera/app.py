"""The FastAPI application. Nothing connects at import: the lifespan opens the stores."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import AsyncConnectionPool
from pymongo.errors import PyMongoError

from syntera import __version__
from syntera.agents.routes import routers as agents
from syntera.analytics.routes import routers as analytics
from syntera.api.errors import PROBLEM_RESPONSES, install_error_handlers, use_problem_media_type
from syntera.api.fast_paths import FastPaths
from syntera.api.http_metrics import HttpMetrics
from syntera.api.json_guard import JsonGuard
from syntera.api.limits import BodySizeLimit
from syntera.api.log_redaction import install_log_redaction
from syntera.api.sse import StreamHandoff
from syntera.api.state import Stores
from syntera.auth import keys as signing_keys
from syntera.auth.admin_routes import router as auth_admin_router
from syntera.auth.common_routes import GoTrueError
from syntera.auth.flow_routes import router as auth_flows_router
from syntera.auth.mail import CHANNEL as MAIL_CHANNEL
from syntera.auth.mail import MailWorker, mailer_for
from syntera.auth.routes import router as auth_router
from syntera.auth.tokens import authenticator, load_keys
from syntera.cache import Cache, TimesToLive
from syntera.calls.routes import routers as calls
from syntera.companies.routes import routers as companies
from syntera.config import Settings, get_settings
from syntera.console.routes import install_console
from syntera.conversations.departures import CHANNEL as DEPARTURES_CHANNEL
from syntera.conversations.departures import POLL_S as DEPARTURES_POLL_S
from syntera.conversations.departures import DepartureWorker
from syntera.conversations.inbox_routes import routers as inbox
from syntera.conversations.replies import CHANNEL as REPLIES_CHANNEL
from syntera.conversations.replies import ReplyWorker
from syntera.conversations.routes import routers as conversations
from syntera.conversations.store import ConversationStore
from syntera.conversations.store import indexes as conversation_indexes
from syntera.crm.routes import routers as crm
from syntera.db.mongo import MongoDatabase, create_mongo_client, prepare_database
from syntera.db.postgres import TenantConnection, create_api_pool
from syntera.db.redis import RedisClient, connect_redis, create_redis
from syntera.embedded import MONGODB, StackUrls, configured_urls
from syntera.events.routes import routers as events
from syntera.events.streams import create_events
from syntera.insights.routes import routers as reports
from syntera.insights.store import InsightStore
from syntera.insights.worker import CHANNEL as INSIGHTS_CHANNEL
from syntera.insights.worker import InsightWorker, classifier_for
from syntera.kb.embeddings import Embedder
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.kb.processing import DocumentWorker
from syntera.kb.routes import UPLOAD_PATH
from syntera.kb.routes import routers as knowledge_base
from syntera.llm.choice import ChatModels
from syntera.metrics import watch_postgres_pool
from syntera.notifications.routes import routers as notifications
from syntera.ops.operator import record_sizes
from syntera.ops.routes import routers as admin
from syntera.purges.registry import StoredElsewhere, stored_elsewhere
from syntera.purges.routes import routers as purges
from syntera.purges.worker import CHANNEL as PURGES_CHANNEL
from syntera.purges.worker import PurgeWorker
from syntera.ratelimit import Limiters
from syntera.rest.mount import RestPaths, handlers, serving_rest
from syntera.saved_replies.routes import routers as saved_replies
from syntera.unit_of_work import Publisher
from syntera.widget.routes import routers as widget
from syntera.workers import Worker, listen_url, run_workers
from syntera.workflows.engine import CHANNEL as WORKFLOWS_CHANNEL
from syntera.workflows.engine import WorkflowWorker
from syntera.workflows.routes import routers as workflows

READINESS_TIMEOUT_S = 2.0

log = logging.getLogger(__name__)


async def _postgres_ready(stores: Stores) -> None:
    async with stores.postgres.connection(timeout=READINESS_TIMEOUT_S) as conn:
        await conn.execute("SELECT 1")


async def _mongo_ready(stores: Stores) -> None:
    await stores.mongo.admin.command("ping")


async def _redis_ready(stores: Stores) -> None:
    await stores.redis.ping()


async def failing_stores(stores: Stores) -> list[str]:
    """The names of the stores that do not answer within the readiness timeout (all
    asked at once, so a readiness probe waits at most one timeout)."""
    checks = {"postgres": _postgres_ready, "mongodb": _mongo_ready, "redis": _redis_ready}
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(check(stores), READINESS_TIMEOUT_S) for check in checks.values()),
        return_exceptions=True,  # any failure means "not ready"; the name is what matters
    )
    return [name for name, outcome in zip(checks, outcomes, strict=True) if outcome is not None]


async def _prepare_mongo(settings: Settings, database: MongoDatabase) -> None:
    specs = conversation_indexes(settings.message_retention_days)
    try:
        created = await prepare_database(database, specs, int(settings.slow_statement_ms))
    except PyMongoError as error:
        log.warning("MongoDB indexes not checked at start-up: %s", error)
        return
    if created:
        log.info("created MongoDB indexes: %s", ", ".join(created))


async def _warm_then_freeze(embedder: Embedder) -> None:
    await embedder.warm()
    gc.freeze()


def size_sampler(settings: Settings, urls: StackUrls) -> Callable[[], Awaitable[bool]]:
    """The workers' round that records the stores' sizes (at most one sample per period
    across processes), for the operator's growth chart."""

    async def sample() -> bool:
        every_s = settings.size_sample_s * 0.9  # a round that starts a little early counts
        await asyncio.to_thread(
            record_sizes,
            urls.database_url,
            urls.mongodb_uri,
            settings.mongodb_db,
            every_s,
            settings.data_dir / MONGODB,
        )
        return False  # then wait a period

    return sample


def cache_for(settings: Settings, redis: RedisClient) -> Cache | None:
    """The read cache of this process (None when the settings turn it off)."""
    if not settings.cache_enabled:
        return None
    ttl = TimesToLive(
        settings.cache_agent_ttl_s, settings.cache_conversation_ttl_s, settings.cache_messages_ttl_s
    )
    return Cache(redis, settings.redis_timeout_s, ttl)


def build_workers(
    settings: Settings,
    urls: StackUrls,
    pool: AsyncConnectionPool[TenantConnection],
    kb: KnowledgeBase,
    stored: StoredElsewhere,
    *,
    jwt_secret: str,
    documents: int,
    cache: Cache | None = None,
    events: Publisher | None = None,
    conversations: ConversationStore | None = None,
    models: ChatModels | None = None,
) -> list[Worker]:
    """The background work of one process, as the settings turn it on: ``documents``
    document workers, the workflow runners, the purger, the mailer, the departures of
    members (given the conversations), the agents' reply writers (given the conversations
    and the models) and the size sampler.
    The API's lifespan and ``syntera worker`` both run what this returns."""
    workers: list[Worker] = []
    if documents:
        document_worker = DocumentWorker(pool, kb)
        workers.append(Worker("knowledge-base", document_worker.run_once, settings.kb_poll_s,
                              copies=documents))  # fmt: skip
    if settings.workflow_worker_enabled and settings.workflow_worker_concurrency:
        engine = WorkflowWorker(pool, settings, cache=cache, events=events)
        workers.append(Worker("workflow", engine.run_once, settings.workflow_poll_s,
                              WORKFLOWS_CHANNEL, settings.workflow_worker_concurrency))  # fmt: skip
    if settings.purge_worker_enabled:
        purger = PurgeWorker(pool, stored, settings.purge_lease_s)
        workers.append(Worker("purge", purger.run_once, settings.kb_poll_s, PURGES_CHANNEL))
    if settings.mail_worker_enabled:
        mailer = MailWorker(pool, mailer_for(settings), settings, jwt_secret)
        workers.append(Worker("mail", mailer.run_once, settings.kb_poll_s, MAIL_CHANNEL))
    if settings.insights_worker_enabled and conversations is not None and models is not None:
        insights = InsightWorker(pool, settings, InsightStore(conversations),
                                 classifier_for(settings, kb.embedder, models), models,
                                 cache=cache, events=events)  # fmt: skip
        # Two loops: a summary (a model's answer) never waits behind a classifying backlog;
        # classifying waits a moment after a visitor's message, so the agent's reply goes
        # first and a second's messages are classified in one round.
        workers.append(Worker("insights", insights.run_classifying, settings.kb_poll_s,
                              INSIGHTS_CHANNEL, settle_s=settings.insights_settle_s))  # fmt: skip
        workers.append(Worker("insight summaries", insights.run_summarizing, settings.kb_poll_s,
                              INSIGHTS_CHANNEL))  # fmt: skip
    if settings.departure_worker_enabled and conversations is not None:
        # Woken by its NOTIFY at once; the poll only brings back the retries, so it is
        # rare: an idle claim every second per process cost the reply path's CPU.
        departures = DepartureWorker(pool, conversations, cache=cache, events=events)
        workers.append(Worker("departure", departures.run_once, DEPARTURES_POLL_S,
                              DEPARTURES_CHANNEL))  # fmt: skip
    if settings.reply_worker_enabled and conversations is not None and models is not None:
        replier = ReplyWorker(pool, settings, conversations, kb, models, cache=cache,
                              events=events)  # fmt: skip
        # One claiming loop; its answers run as tasks, reply_worker_concurrency at once.
        workers.append(Worker("agent reply", replier.run_spawning, settings.kb_poll_s,
                              REPLIES_CHANNEL, finish=replier.stop,
                              halt=replier.halt))  # fmt: skip
    if workers and settings.size_sample_s > 0:
        workers.append(Worker("size sampler", size_sampler(settings, urls), settings.size_sample_s))
    return workers


def resource_routers() -> list[APIRouter]:
    """The /v1 routers of every domain."""
    # The inbox's before the companies' (/v1/team/presence before /v1/team/{id}).
    return [
        *inbox, *saved_replies, *companies, *agents, *crm, *workflows, *calls, *notifications,
        *analytics, *reports, *conversations, *events, *widget, *knowledge_base, *purges,
        *admin,
    ]  # fmt: skip


def create_app(settings: Settings, urls: StackUrls) -> FastAPI:
    """The application for one process, connected to the stores at ``urls``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = create_api_pool(settings, urls.api_database_url, system_conninfo=urls.system_url())
        await pool.open(wait=False)
        watch_postgres_pool(pool)
        mongo = create_mongo_client(settings, urls.mongodb_uri)
        database = mongo[settings.mongodb_db]
        redis = create_redis(settings, urls.redis_url)
        await connect_redis(redis)
        app.state.stores = Stores(pool, mongo, redis)
        app.state.conversations = ConversationStore(database)
        app.state.stored_elsewhere = stored_elsewhere(app.state.conversations, app.state.kb, redis)
        app.state.limiters = Limiters.from_settings(settings, redis)
        any_role = authenticator(app.state.keys, any_role=True)
        rest = serving_rest(settings, pool, urls.api_database_url, any_role, app.state.limiters)
        app.state.rest = await rest.__aenter__()
        app.state.events = create_events(settings, redis, urls.redis_url)
        app.state.publisher = app.state.events.publisher
        app.state.cache = cache_for(settings, redis)
        # Indexes are also made by `syntera migrate`; here in the background, so that a
        # MongoDB that is down delays nothing (/readyz reports it).
        indexing = asyncio.create_task(_prepare_mongo(settings, database))
        # The embedding model loads at start-up, so the first search does not wait 5 s;
        # by default before the first request is accepted, since loading it beside the
        # requests slowed them for its whole length (bench/startup.py).
        embedder = app.state.kb.embedder
        warming = asyncio.create_task(asyncio.sleep(0))
        if settings.kb_preload_model and settings.kb_model_loading == "before_serving":
            try:
                await embedder.warm()
            except Exception:  # serve anyway: the first search tries again and says why
                log.exception("the embedding model did not load at start-up")
        elif settings.kb_preload_model:
            warming = asyncio.create_task(_warm_then_freeze(embedder))
        # What start-up made stays: the collector no longer walks it at every full pass.
        gc.freeze()
        stop_workers = asyncio.Event()
        documents = settings.kb_worker_concurrency if settings.kb_worker_enabled else 0
        ring = app.state.keys.ring
        ring.signs = settings.jwt_signing == "ES256"
        keys_tried = asyncio.Event()
        refreshing = asyncio.create_task(
            signing_keys.keep_loaded(pool, ring, settings.auth_keys_refresh_s, stop_workers,
                                     keys_tried)
        )  # fmt: skip
        # Serve with the keys loaded when the database answers; without it (/healthz
        # still answers) the loading goes on in the background.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(keys_tried.wait(), 2)
        workers = build_workers(
            settings, urls, pool, app.state.kb, app.state.stored_elsewhere,
            jwt_secret=app.state.keys.jwt_secret, documents=documents,
            cache=app.state.cache, events=app.state.events.publisher,
            conversations=app.state.conversations, models=app.state.models,
        )  # fmt: skip
        background = None
        if workers:
            background = asyncio.create_task(
                run_workers(workers, listen_url(settings, urls), stop_workers)
            )
        try:
            yield
        finally:
            stop_workers.set()
            if background is not None:
                # Work in flight is left under its lease (or released, if not begun):
                # another worker takes it over.
                _, pending = await asyncio.wait([background], timeout=5)
                for task in pending:
                    task.cancel()
            indexing.cancel()
            warming.cancel()
            refreshing.cancel()
            await rest.__aexit__(None, None, None)
            await app.state.events.close()
            await redis.aclose()
            await mongo.close()
            await pool.close()

    app = FastAPI(
        title="Syntera",
        version=__version__,
        description="The data platform of conversational-AI agents: auth, CRM, agents, "
        "workflows, calls, notifications, analytics and knowledge-base search, isolated per "
        "company.",
        lifespan=lifespan,
        # No OpenTelemetry provider is configured (the metrics are Prometheus', below):
        # FastAPI's own check for one cost about 1% of a fast read's CPU (py-spy).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Served from the package by install_console, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_log_redaction()
    app.state.settings = settings
    app.state.urls = urls
    app.state.keys = load_keys(settings)
    app.state.authenticate = authenticator(app.state.keys)
    app.state.kb = KnowledgeBase.from_settings(settings)
    app.state.models = ChatModels.from_settings(settings)
    # Room for the multipart framing around the largest file accepted.
    upload_limit = settings.kb_max_file_bytes + 64 * 1024
    # Innermost first: the JSON guard reads bodies the size limit has already bounded.
    app.add_middleware(FastPaths)  # the hot routes, beside FastAPI's routing
    app.add_middleware(RestPaths, handlers=handlers())  # /rest/v1, beside it too
    app.add_middleware(JsonGuard)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, uploads={UPLOAD_PATH: upload_limit}
    )
    app.add_middleware(HttpMetrics)
    app.add_middleware(StreamHandoff)
    # Tokens travel in headers, never in cookies: any site may call the API (the widget
    # is embedded on the companies' own sites), as Supabase's API allows.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["Retry-After", "WWW-Authenticate"],
        max_age=600,
    )
    install_error_handlers(app)

    @app.exception_handler(GoTrueError)
    async def on_gotrue_error(request: Request, error: GoTrueError) -> JSONResponse:
        return error.response()

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus text format (each worker process serves its own figures)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    install_console(app)
    app.include_router(auth_router)
    app.include_router(auth_flows_router)
    app.include_router(auth_admin_router)
    for router in resource_routers():
        app.include_router(router, responses=PROBLEM_RESPONSES)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = use_problem_media_type(get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            ))  # fmt: skip
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is alive (no store is asked)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "A store is down"}})
    async def readyz() -> JSONResponse:
        """200 when every store answers; 503 naming the stores that do not."""
        failing = await failing_stores(app.state.stores)
        if failing:
            return JSONResponse({"status": "unavailable", "failing": failing}, status_code=503)
        return JSONResponse({"status": "ready"})

    return app


def app_from_environment() -> FastAPI:
    """The application as ``syntera serve`` runs it in each worker process: settings from
    the ``SYNTERA_*`` environment, URLs configured or of the running embedded stack."""
    settings = get_settings()
    return create_app(settings, configured_urls(settings))
