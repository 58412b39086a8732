"""The schema cache follows the database: a table made by a migration is served once
``NOTIFY pgrst, 'reload schema'`` is sent (``syntera migrate`` sends it)."""

from __future__ import annotations

import asyncio

import psycopg

from syntera.db.migrations import load_migrations, migrate
from syntera.embedded import StackUrls
from tests.conftest import create_database
from tests.rest.conftest import Books


async def test_a_new_table_is_served_after_notify(
    books: Books, owner_conn: psycopg.Connection
) -> None:
    owner_conn.execute("DROP TABLE IF EXISTS rest_fixtures.added_later")
    owner_conn.execute("NOTIFY pgrst, 'reload schema'")
    await asyncio.sleep(0.3)
    response = await books.get("added_later")
    assert (response.status_code, response.json()["code"]) == (404, "PGRST205")
    owner_conn.execute(
        "CREATE TABLE rest_fixtures.added_later (id int PRIMARY KEY, note text);"
        "INSERT INTO rest_fixtures.added_later VALUES (1, 'new');"
        "GRANT SELECT ON rest_fixtures.added_later TO anon;"
        "NOTIFY pgrst, 'reload schema'"
    )
    for _ in range(50):
        response = await books.get("added_later?select=note")
        if response.status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert (response.status_code, response.json()) == (200, [{"note": "new"}])


def test_syntera_migrate_tells_the_schema_caches_to_reload(stack: StackUrls) -> None:
    """A migration applied sends NOTIFY pgrst, 'reload schema' (nothing pending: none)."""
    database = create_database(stack, "restmigrate")
    first = load_migrations()[:1]
    with psycopg.connect(database.owner_url, autocommit=True) as listener:
        listener.execute("LISTEN pgrst")
        migrate(database.owner_url, migrations=first)
        heard = [n.payload for n in listener.notifies(timeout=2, stop_after=1)]
        assert heard == ["reload schema"]
        migrate(database.owner_url, migrations=first)
        assert [n.payload for n in listener.notifies(timeout=0.5, stop_after=1)] == []
