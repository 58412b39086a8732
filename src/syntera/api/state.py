"""What one API process holds, read from the request with a type.

``create_app`` puts the configuration on ``app.state`` when the application is made, and
the lifespan adds the open stores; routes and dependencies read them through the
functions here rather than through untyped ``request.app.state`` attributes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from syntera import unit_of_work
from syntera.auth.tokens import Keys
from syntera.cache import Cache
from syntera.config import Settings
from syntera.conversations.store import ConversationStore
from syntera.db.mongo import MongoClient
from syntera.db.postgres import TenantConnection
from syntera.db.redis import RedisClient
from syntera.embedded import StackUrls
from syntera.events.bus import Publisher
from syntera.events.streams import Events
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.llm.choice import ChatModels
from syntera.ratelimit import Limiters


@dataclass
class Stores:
    """The open connections of one API process."""

    postgres: AsyncConnectionPool[TenantConnection]
    mongo: MongoClient
    redis: RedisClient
    conversations: ConversationStore


def _held(request: Request, name: str) -> Any:
    return getattr(request.app.state, name)


def settings_of(request: Request) -> Settings:
    return cast(Settings, _held(request, "settings"))


def urls_of(request: Request) -> StackUrls:
    return cast(StackUrls, _held(request, "urls"))


def keys_of(request: Request) -> Keys:
    return cast(Keys, _held(request, "keys"))


def knowledge_base_of(request: Request) -> KnowledgeBase:
    return cast(KnowledgeBase, _held(request, "kb"))


def models_of(request: Request) -> ChatModels:
    return cast(ChatModels, _held(request, "models"))


def stores_of(request: Request) -> Stores:
    return cast(Stores, _held(request, "stores"))


def limiters_of(request: Request) -> Limiters:
    return cast(Limiters, _held(request, "limiters"))


def events_of(request: Request) -> Events:
    return cast(Events, _held(request, "events"))


def publisher_of(request: Request) -> Publisher:
    return events_of(request).publisher


def cache_of(request: Request) -> Cache | None:
    return cast("Cache | None", _held(request, "cache"))


@asynccontextmanager
async def system_transaction(request: Request) -> AsyncIterator[TenantConnection]:
    """A transaction as the system (service_role), for the calls whose caller is not a
    user of a company: sign-in, the widget's key lookup, inbound webhooks."""
    async with unit_of_work.system_transaction(stores_of(request).postgres) as conn:
        yield conn
