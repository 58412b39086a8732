"""Making a MongoDB database ready, from the command line (``syntera migrate``, ``up``)."""

from __future__ import annotations

from syntera.config import Settings
from syntera.conversations.store import fill_inbox_fields, indexes
from syntera.db.mongo import IndexState, create_mongo_client, index_status, prepare_database

# The command line should not hang for the default 30 s when MongoDB is not there.
QUICK_SELECTION_MS = 5000


async def prepare_mongo(settings: Settings, uri: str) -> list[str]:
    """Create the MongoDB indexes (and set the profiler), and fill the inbox's fields of
    conversations stored before they existed; the names of the indexes created."""
    quick = settings.model_copy(update={"mongodb_server_selection_timeout_ms": QUICK_SELECTION_MS})
    client = create_mongo_client(quick, uri)
    try:
        specs = indexes(settings.message_retention_days)
        database = client[settings.mongodb_db]
        created = await prepare_database(database, specs, int(settings.slow_statement_ms))
        await fill_inbox_fields(database)
        return created
    finally:
        await client.close()


async def mongo_index_states(settings: Settings, uri: str) -> list[IndexState]:
    """Each wanted MongoDB index and whether it is present as defined."""
    quick = settings.model_copy(update={"mongodb_server_selection_timeout_ms": QUICK_SELECTION_MS})
    client = create_mongo_client(quick, uri)
    try:
        database = client[settings.mongodb_db]
        return await index_status(database, indexes(settings.message_retention_days))
    finally:
        await client.close()
