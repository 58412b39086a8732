"""The data API's tests: the session's application, called in-process, as the seeded
tenants' members, the anonymous role and the service key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from syntera.config import Settings
from syntera.embedded import StackUrls
from syntera.tenancy import Principal
from tests.api_fixtures import AuthHeaders, served

FIXTURES = """
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rest_reader') THEN
    CREATE ROLE rest_reader NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rest_stranger') THEN
    CREATE ROLE rest_stranger NOLOGIN;
  END IF;
END $$;
GRANT rest_reader TO authenticator;
DROP SCHEMA IF EXISTS rest_fixtures CASCADE;
CREATE SCHEMA rest_fixtures;
GRANT USAGE ON SCHEMA rest_fixtures TO anon, authenticated, rest_reader, rest_stranger;
CREATE TABLE rest_fixtures.authors (
  id int PRIMARY KEY, name text NOT NULL, born date, data jsonb, tags text[],
  tsv tsvector, score numeric, span int4range, nickname text
);
CREATE TABLE rest_fixtures.books (
  id int PRIMARY KEY, title text NOT NULL, year int,
  author_id int REFERENCES rest_fixtures.authors (id),
  editor_id int REFERENCES rest_fixtures.authors (id)
);
CREATE TABLE rest_fixtures.reviews (
  id int PRIMARY KEY, book_id int NOT NULL REFERENCES rest_fixtures.books (id), stars int
);
CREATE TABLE rest_fixtures.genres (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE rest_fixtures.book_genres (
  book_id int REFERENCES rest_fixtures.books (id),
  genre_id int REFERENCES rest_fixtures.genres (id),
  PRIMARY KEY (book_id, genre_id)
);
CREATE TABLE rest_fixtures.secrets (id int PRIMARY KEY, secret text);
CREATE VIEW rest_fixtures.recent_books AS SELECT id, title, year FROM rest_fixtures.books
  WHERE year >= 2000;
CREATE VIEW rest_fixtures.whoami AS
  SELECT current_user::text AS role, current_setting('request.jwt.claims', true) AS claims,
         current_setting('request.method', true) AS method,
         current_setting('request.path', true) AS path,
         current_setting('request.headers', true)::json->>'x-probe' AS probe;
GRANT SELECT ON rest_fixtures.authors, rest_fixtures.books, rest_fixtures.reviews,
  rest_fixtures.recent_books, rest_fixtures.whoami, rest_fixtures.genres,
  rest_fixtures.book_genres TO anon, authenticated, rest_reader;
GRANT SELECT (id) ON rest_fixtures.secrets TO anon, authenticated;
-- A computed column of books (PostgREST's computed fields): a function of its row.
CREATE FUNCTION rest_fixtures.label(rest_fixtures.books) RETURNS text
  LANGUAGE sql STABLE AS $$SELECT $1.title || ' (' || $1.year || ')'$$;
CREATE TABLE rest_fixtures.events (id int PRIMARY KEY, at timestamptz NOT NULL);
GRANT SELECT ON rest_fixtures.events TO anon, authenticated, rest_reader;
INSERT INTO rest_fixtures.events VALUES (1, '2024-01-01 12:00:00+00');
INSERT INTO rest_fixtures.authors VALUES
  (1, 'Ursula', '1929-10-21', '{"city": "Berkeley", "awards": {"hugo": 5}}', '{sf,fantasy}',
   to_tsvector('english', 'the wizard of earthsea'), 9.5, '[1,10)', NULL),
  (2, 'Octavia', '1947-06-22', '{"city": "Pasadena", "awards": {"hugo": 2}}', '{sf}',
   to_tsvector('english', 'the parable of the sower'), 9.1, '[5,20)', 'O.'),
  (3, 'Italo', '1923-10-15', '{"city": "Sanremo"}', '{fable}',
   to_tsvector('english', 'invisible cities and winter nights'), 8.7, '[30,40)', NULL);
INSERT INTO rest_fixtures.books VALUES
  (1, 'A Wizard of Earthsea', 1968, 1, 2), (2, 'The Dispossessed', 1974, 1, NULL),
  (3, 'Kindred', 1979, 2, 1), (4, 'Parable of the Sower', 1993, 2, NULL),
  (5, 'Invisible Cities', 1972, 3, NULL), (6, 'Lilith''s Brood', 2000, 2, 3);
INSERT INTO rest_fixtures.reviews VALUES (1, 1, 5), (2, 1, 4), (3, 3, 5), (4, 5, 3);
INSERT INTO rest_fixtures.secrets VALUES (1, 'hidden');
INSERT INTO rest_fixtures.genres VALUES (1, 'science fiction'), (2, 'fantasy'), (3, 'fable');
INSERT INTO rest_fixtures.book_genres VALUES (1, 2), (2, 1), (3, 1), (3, 2), (5, 3);
"""


@pytest.fixture(scope="session")
def rest_fixtures(owner_conn: psycopg.Connection) -> str:
    """A schema of books and authors, exposed beside public (the conformance suite's
    kind of fixtures: no RLS, grants to the API roles)."""
    owner_conn.execute(FIXTURES)
    return "rest_fixtures"


@pytest.fixture(scope="session")
async def rest_app(
    settings: Settings, api_urls: StackUrls, rest_fixtures: str
) -> AsyncIterator[httpx.AsyncClient]:
    """An application whose /rest/v1 exposes public and the fixtures, honours
    ``Prefer: tx=rollback`` and caps pages at 1,000 rows, as the conformance suite runs
    it."""
    from syntera.app import create_app

    configured = settings.model_copy(
        update={"rest_tx_end": "commit-allow-override", "rest_max_rows": 1000,
                "rate_limits_enabled": False, "rest_schemas": f"public,{rest_fixtures}"}
    )  # fmt: skip
    async with served(create_app(configured, api_urls)) as client:
        yield client


class Rest:
    """GETs of /rest/v1 as someone."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def get(self, path: str, **headers: str) -> httpx.Response:
        extra = {name.replace("_", "-"): value for name, value in headers.items()}
        return await self.client.get(f"/rest/v1/{path}", headers={**self.headers, **extra})

    async def rows(self, path: str, **headers: str) -> Any:
        response = await self.get(path, **headers)
        assert response.status_code in (200, 206), response.text
        return response.json()


@pytest.fixture
def rest_as(rest_app: httpx.AsyncClient, auth: AuthHeaders) -> Any:
    """``rest_as(principal)``: a client of /rest/v1 as ``principal`` (None: no token)."""

    def make(principal: Principal | None) -> Rest:
        return Rest(rest_app, auth(principal) if principal is not None else {})

    return make


class Books(Rest):
    """GETs of the fixtures' schema (Accept-Profile: rest_fixtures)."""

    async def get(self, path: str, **headers: str) -> httpx.Response:
        return await super().get(path, accept_profile="rest_fixtures", **headers)


@pytest.fixture
def books(rest_app: httpx.AsyncClient) -> Books:
    """The fixtures' schema, as the anonymous role."""
    return Books(rest_app, {})
