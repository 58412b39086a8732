"""A reply's search runs under the company's row-level security, not only under its own
company filter: the database keeps another company's chunks from it."""

from __future__ import annotations

import uuid

from syntera.agents.prompt import find_sources_alone
from syntera.tenancy import Principal
from tests.agents.chats import MakeWorker
from tests.factories import SeededCompany


async def test_the_replys_search_sees_only_the_company_whose_owner_it_runs_as(
    shops: tuple[SeededCompany, SeededCompany], make_worker: MakeWorker
) -> None:
    first, second = shops
    worker = make_worker()
    vector = [float(x) for x in (await worker.kb.embedder.embed(["How long do refunds take?"]))[0]]

    async def search(principal: Principal, company_id: uuid.UUID) -> list[str]:
        sources = await find_sources_alone(
            worker.pool, principal, company_id, worker.kb, uuid.uuid4(),
            "How long do refunds take?", vector, limit=4, min_similarity=0.0, mode="hybrid",
        )  # fmt: skip
        return [source.content for source in sources]

    own = await search(first.owner, first.company_id)
    theirs = await search(second.owner, second.company_id)
    assert own
    assert theirs
    assert not set(own) & set(theirs)
    # The statement asks for the second company's chunks as the first company's owner:
    # row-level security answers with nothing.
    assert await search(first.owner, second.company_id) == []
