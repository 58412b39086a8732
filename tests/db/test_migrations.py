"""The migration runner on fresh databases of the session's PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading

import psycopg
import pytest

from syntera.db.migrations import Migration, MigrationError, load_migrations, migrate
from syntera.embedded import StackUrls
from tests.conftest import StackDatabase, create_database


@pytest.fixture
def fresh(stack: StackUrls) -> StackDatabase:
    return create_database(stack, "migr")


def applied_versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version FROM syntera.schema_migrations ORDER BY 1").fetchall()
    return [version for (version,) in rows]


def test_files_are_numbered_without_gaps() -> None:
    versions = [migration.version for migration in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_fresh_apply_then_rerun_is_a_no_op(fresh: StackDatabase) -> None:
    applied = migrate(fresh.owner_url)
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    assert migrate(fresh.owner_url) == []
    assert applied_versions(fresh.owner_url) == [m.version for m in load_migrations()]


def test_dry_run_changes_nothing(fresh: StackDatabase) -> None:
    would_apply = migrate(fresh.owner_url, dry_run=True)
    assert len(would_apply) == len(load_migrations())
    with psycopg.connect(fresh.owner_url) as conn:
        assert conn.execute("SELECT to_regclass('public.contacts')").fetchone() == (None,)


def test_edited_applied_file_is_refused_by_name(fresh: StackDatabase) -> None:
    migrations = load_migrations()
    migrate(fresh.owner_url, migrations=migrations)
    edited = [
        dataclasses.replace(m, sql=m.sql + "\n-- edited\n") if m.version == 2 else m
        for m in migrations
    ]
    with pytest.raises(MigrationError, match=r"002_core_schema\.sql"):
        migrate(fresh.owner_url, migrations=edited)


def test_failing_migration_leaves_nothing_behind(fresh: StackDatabase) -> None:
    broken = [
        *load_migrations(),
        Migration(99, "broken", "CREATE TABLE public.half_done (id int); SELECT 1/0;"),
    ]
    with pytest.raises(MigrationError, match=r"099_broken\.sql"):
        migrate(fresh.owner_url, migrations=broken)
    assert 99 not in applied_versions(fresh.owner_url)
    with psycopg.connect(fresh.owner_url) as conn:
        assert conn.execute("SELECT to_regclass('public.half_done')").fetchone() == (None,)


def test_two_concurrent_runs_apply_each_file_once(fresh: StackDatabase) -> None:
    results: list[list[Migration]] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        try:
            results.append(migrate(fresh.owner_url))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    applied_counts = sorted(len(result) for result in results)
    assert applied_counts == [0, len(load_migrations())]
    assert applied_versions(fresh.owner_url) == [m.version for m in load_migrations()]


def test_migrations_run_on_a_second_database_of_the_same_cluster(fresh: StackDatabase) -> None:
    """Roles are cluster-wide and already exist: 001 must tolerate that."""
    migrate(fresh.owner_url)
    with psycopg.connect(fresh.owner_url) as conn:
        assert conn.execute("SELECT to_regprocedure('auth.uid()') IS NOT NULL").fetchone() == (
            True,
        )


SUPABASE_LIKE = """
CREATE SCHEMA auth;
CREATE TABLE auth.users (
  id uuid PRIMARY KEY, email text, raw_user_meta_data jsonb, supabase_only_column text
);
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE
  AS $$ SELECT '00000000-0000-0000-0000-00000000abcd'::uuid $$;
"""


def test_existing_supabase_auth_schema_is_left_alone(fresh: StackDatabase) -> None:
    with psycopg.connect(fresh.owner_url, autocommit=True) as conn:
        conn.execute(SUPABASE_LIKE)
    migrate(fresh.owner_url)
    with psycopg.connect(fresh.owner_url) as conn:
        columns = conn.execute(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_schema = 'auth' AND table_name = 'users'"
            " AND column_name = 'supabase_only_column'"
        ).fetchone()
        uid = conn.execute("SELECT auth.uid()::text").fetchone()
    assert columns == (1,)
    assert uid == ("00000000-0000-0000-0000-00000000abcd",)
