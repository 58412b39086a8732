"""The MongoDB client and idempotent index management.

MongoDB has no row-level security: isolation is the job of the stores above (every filter
names ``company_id``, see syntera.conversations.store). This module knows no domain.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
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
_surrogates: weakref.WeakKeyDictionary[MongoClient, bool] = weakref.WeakKeyDictionary()


async def is_surrogate(client: MongoClient) -> bool:
    """Whether the client speaks to the embedded SecantusDB (asked once per client)."""
    known = _surrogates.get(client)
    if known is None:
        known = _surrogates[client] = SURROGATE in await client.admin.command("buildInfo")
    return known


# The update operators whose changed paths are their fields' names (what the read after
# the write is told apart by); a pipeline or $rename is refused before anything is written.
UPDATE_OPERATORS = frozenset(
    {"$set", "$unset", "$inc", "$max", "$min", "$mul", "$push", "$pull", "$addToSet",
     "$currentDate", "$pop", "$setOnInsert"}
)  # fmt: skip


async def update_and_read(
    collection: AsyncCollection[Document],
    filter: Document,
    update: Document,
    *,
    projection: Document | None = None,
    array_filters: list[Document] | None = None,
) -> Document | None:
    """Update the one document ``filter`` names by ``_id``; the document after, or None
    when the filter matched nothing.

    On MongoDB this is one findAndModify, whose answer is exactly the write's result.
    SecantusDB answers a findAndModify by reading every document of the collection: it
    re-asserts the match as ``{_id, $and: [filter]}`` before writing, a form it tries no
    index for (0.7.0b3: 15 ms at 1,000 documents, 300 ms at 20,000, against 1 ms for an
    update by ``_id``; hand-off, assignment and every message's append write this
    way). On it, the same update is an ``update_one`` and then a read by ``_id``. The
    read may also show a write that landed between the two: it is the document as it now
    is, not as this write left it (a caller that needs the latter, a count to use as a
    position say, must find it otherwise).
    """
    if "_id" not in filter or isinstance(filter["_id"], dict):
        raise ValueError("update_and_read names one document by its _id")
    if not isinstance(update, dict) or not set(update) <= UPDATE_OPERATORS:
        raise ValueError(f"update_and_read takes updates by {sorted(UPDATE_OPERATORS)}")
    client = collection.database.client
    if not await is_surrogate(client):
        return await collection.find_one_and_update(
            filter,
            update,
            projection=projection,
            array_filters=array_filters,
            return_document=ReturnDocument.AFTER,
        )
    if (
        await collection.update_one(filter, update, array_filters=array_filters)
    ).matched_count == 0:
        return None
    # Read back by what the update left as it was (the tenant's fields among them).
    written = [path for fields in update.values() for path in fields]
    again = {
        key: value
        for key, value in filter.items()
        if key == "_id" or not any(_overlap(key, path) for path in written)
    }
    return await collection.find_one(again, projection)


async def delete_and_read(
    collection: AsyncCollection[Document], filter: Document
) -> Document | None:
    """Delete the one document ``filter`` names by ``_id``; the document as it was, or
    None when the filter matched nothing (or another delete took it first).

    On MongoDB this is one findAndModify; SecantusDB would read the whole collection for
    it (see ``update_and_read``), so there it is a read and then a delete of what was read,
    which only one of two racing deletes counts."""
    if "_id" not in filter or isinstance(filter["_id"], dict):
        raise ValueError("delete_and_read names one document by its _id")
    if not await is_surrogate(collection.database.client):
        return await collection.find_one_and_delete(filter)
    found = await collection.find_one(filter)
    if found is None or (await collection.delete_one(filter)).deleted_count == 0:
        return None
    return found


def _overlap(key: str, path: str) -> bool:
    """Whether a filter's field and an updated path touch: one is the other or holds it."""
    key, path = key.split(".$")[0], path.split(".$")[0]
    return key == path or key.startswith(path + ".") or path.startswith(key + ".")


async def prepare_database(db: MongoDatabase, specs: list[IndexSpec], slow_ms: int) -> list[str]:
    """Make the database ready to serve: the indexes in ``specs`` (created if missing or
    different, as ``ensure_indexes``), and the profiler recording operations slower than
    ``slow_ms`` (level 1; a server that has no profiler is left as it is). The names of
    the indexes created. Used at API start-up and by ``syntera migrate``; safe to rerun."""
    created = await ensure_indexes(db, specs)
    try:
        if await is_surrogate(db.client):
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
