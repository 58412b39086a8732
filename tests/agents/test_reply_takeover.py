"""Exactly one reply per visitor turn, also when ``syntera worker`` is SIGKILLed while the
model is writing: the job stays under the dead worker's lease, then the next worker
answers it once, under the reply _id the first claim chose."""

from __future__ import annotations

import asyncio
import os

from bson import ObjectId
from fastapi import FastAPI

from syntera.config import Settings
from syntera.conversations.store import ConversationStore
from syntera.embedded import StackUrls
from tests.agents.chats import ASK, AgentChat, MakeWorker, messages, until_claimed
from tests.agents.standin import StandIn
from tests.conftest import StackDatabase
from tests.factories import SeededCompany
from tests.workers import kill_worker_once

LEASE_S = 2


async def test_a_reply_worker_killed_mid_answer_is_taken_over_and_answers_once(
    agent_chat: AgentChat, standin: StandIn, standin_server: tuple[StandIn, str],
    make_worker: MakeWorker, settings: Settings, database: StackDatabase, api_urls: StackUrls,
) -> None:  # fmt: skip
    standin.reset(behaviour="stall", stall_s=60)
    await agent_chat.say(ASK)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")},
        **api_urls.as_env(),
        "SYNTERA_DATABASE_URL": database.owner_url,
        "SYNTERA_DATA_DIR": str(settings.data_dir),
        "SYNTERA_KB_WORKER_ENABLED": "false",
        "SYNTERA_WORKFLOW_WORKER_ENABLED": "false",
        "SYNTERA_PURGE_WORKER_ENABLED": "false",
        "SYNTERA_MAIL_WORKER_ENABLED": "false",
        "SYNTERA_KB_PRELOAD_MODEL": "false",
        "SYNTERA_LLM_BASE_URL": standin_server[1],
        "SYNTERA_LLM_API_KEY": "sk-test",
        "SYNTERA_LLM_TIMEOUT_S": "120",
        "SYNTERA_REPLY_LEASE_S": str(LEASE_S),
        "SYNTERA_REPLY_WORKER_CONCURRENCY": "1",
    }
    await kill_worker_once(
        env, lambda: len(standin.requests) > 0, "the worker never asked the model",
        timeout_s=90, poll_s=0.05,
    )  # fmt: skip
    assert await agent_chat.senders() == ["user"]
    standin.reset()
    worker = make_worker()
    assert await worker.claim() is None, "not taken while the dead worker's lease runs"
    await asyncio.sleep(LEASE_S + 0.2)
    claimed = await worker.claim()
    assert claimed is not None
    await worker.carry_out(claimed)
    stored = await messages(agent_chat.http, agent_chat.chat)
    assert [m["sender_type"] for m in stored] == ["user", "agent"]
    assert stored[1]["id"] == claimed.reply_id
    assert not await worker.run_once()
    assert len(await messages(agent_chat.http, agent_chat.chat)) == 2


async def test_a_reply_stored_by_a_worker_killed_before_its_commit_is_not_made_again(
    shops: tuple[SeededCompany, SeededCompany], agent_chat: AgentChat,
    standin: StandIn, make_worker: MakeWorker, app: FastAPI,
) -> None:  # fmt: skip
    first, _ = shops
    await agent_chat.say(ASK)
    dead = make_worker(reply_lease_s=0.3)
    killed = await dead.claim()
    assert killed is not None
    # What a worker killed between MongoDB's write and PostgreSQL's commit leaves.
    store: ConversationStore = app.state.conversations
    await store.append(
        first.company_id, ObjectId(killed.conversation_id),
        [{"_id": ObjectId(killed.reply_id), "sender_type": "agent", "role": "assistant",
          "content": "Refunds take 14 days."}],
    )  # fmt: skip
    # Its lease runs out; another worker takes the job over (its second attempt).
    worker = make_worker()
    claimed = await until_claimed(worker)
    assert claimed.reply_id == killed.reply_id
    assert claimed.attempts == 2
    await worker.carry_out(claimed)
    assert standin.requests == [], "the model is not asked again"
    assert await agent_chat.senders() == ["user", "agent"]
    assert not await worker.run_once()
