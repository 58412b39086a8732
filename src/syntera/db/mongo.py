"""The MongoDB client and idempotent index management.

MongoDB has no row-level security: isolation is the job of the stores above (every filter
starts with ``company_id``, see syntera.conversations.store). This module knows no domain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure, PyMongoError

from syntera.config import Settings
from syntera.metrics import MONGO_POOL

log = logging.getLogger(__name__)

Document = dict[str, Any]
MongoClient = AsyncMongoClient[Document]
MongoDatabase = AsyncDatabase[Document]


def create_mongo_client(settings: Settings, uri: str) -> MongoClient:
    """A client with the seed's pool settings (each configurable); it connects lazily."""
    return AsyncMongoClient(
        uri,
        maxPoolSize=settings.mongodb_max_pool_size,
        minPoolSize=settings.mongodb_min_pool_size,
        maxIdleTimeMS=settings.mongodb_max_idle_time_ms,
        socketTimeoutMS=settings.mongodb_socket_timeout_ms,
        serverSelectionTimeoutMS=settings.mongodb_server_selection_timeout_ms,
        tz_aware=True,
        appname="syntera",
        event_listeners=[MONGO_POOL],
        # Acknowledged means durable: by default a write is acknowledged once a majority
        # has it in its journal (on a single node: once it is journaled).
        w=int(settings.mongodb_write_concern)
        if settings.mongodb_write_concern.isdigit()
        else settings.mongodb_write_concern,
        journal=settings.mongodb_journal,
    )


@dataclass(frozen=True)
class IndexSpec:
    """One index of one collection, as ``createIndexes`` takes it."""

    collection: str
    name: str
    keys: list[tuple[str, int]]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IndexState:
    spec: IndexSpec
    state: str  # "present", "missing" or "different"


async def ensure_indexes(db: MongoDatabase, specs: list[IndexSpec]) -> list[str]:
    """Create the missing indexes; the names of those created. Safe to rerun: an index
    that exists with the same keys and options is left alone, one whose definition
    changed is dropped and rebuilt (MongoDB cannot alter an index in place)."""
    created = []
    for spec, state in zip(specs, await _states(db, specs), strict=True):
        if state == "present":
            continue
        collection = db[spec.collection]
        if state == "different":
            await collection.drop_index(spec.name)
        await collection.create_index(spec.keys, name=spec.name, **spec.options)
        created.append(f"{spec.collection}.{spec.name}")
    return created


async def index_status(db: MongoDatabase, specs: list[IndexSpec]) -> list[IndexState]:
    """Each wanted index and whether it is present as defined."""
    return [
        IndexState(spec, state) for spec, state in zip(specs, await _states(db, specs), strict=True)
    ]


async def _states(db: MongoDatabase, specs: list[IndexSpec]) -> list[str]:
    existing: dict[str, dict[str, Document]] = {}
    for collection in {spec.collection for spec in specs}:
        try:
            cursor = await db[collection].list_indexes()
            existing[collection] = {index["name"]: dict(index) for index in await cursor.to_list()}
        except OperationFailure:  # the collection does not exist yet
            existing[collection] = {}
    return [_state(spec, existing[spec.collection].get(spec.name)) for spec in specs]


def _state(spec: IndexSpec, index: Document | None) -> str:
    if index is None:
        return "missing"
    same_keys = [(key, int(direction)) for key, direction in index["key"].items()] == spec.keys
    same_options = all(index.get(option) == value for option, value in spec.options.items())
    ttl_removed = "expireAfterSeconds" in index and "expireAfterSeconds" not in spec.options
    return "present" if same_keys and same_options and not ttl_removed else "different"


# The field of buildInfo by which the embedded MongoDB-wire server (SecantusDB, a
# surrogate for MongoDB) is told apart where one of its costs differs from MongoDB's.
SURROGATE = "secantusVersion"


async def prepare_database(db: MongoDatabase, specs: list[IndexSpec], slow_ms: int) -> list[str]:
    """Make the database ready to serve: the indexes in ``specs`` (created if missing or
    different, as ``ensure_indexes``), and the profiler recording operations slower than
    ``slow_ms`` (level 1; a server that has no profiler is left as it is). The names of
    the indexes created. Used at API start-up and by ``syntera migrate``; safe to rerun."""
    created = await ensure_indexes(db, specs)
    try:
        if SURROGATE in await db.client.admin.command("buildInfo"):
            # The embedded SecantusDB keeps system.profile capped by scanning all of it on
            # every record, under its lock: under load every operation past slow_ms made
            # the next ones slower (bench.agents: replies of one company went from 1 s to
            # 12 s at p95 over a run). Its profiler stays off.
            log.info("MongoDB profiler left off on the embedded server")
        else:
            await db.command("profile", 1, slowms=slow_ms)
    except PyMongoError as error:
        log.info("MongoDB profiler not enabled: %s", error)
    return created
