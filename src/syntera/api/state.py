"""What one API process holds, read from the request with a type.

``create_app`` puts the configuration on ``app.state`` when the application is made, and
the lifespan adds the open stores; routes and dependencies read them through the
functions here rather than through untyped ``request.app.state`` attributes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio as aioredis
from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from syntera.auth.tokens import Keys
from syntera.cache import Cache
from syntera.config import Settings
from syntera.conversations.store import ConversationStore
from syntera.db.mongo import MongoClient
from syntera.db.postgres import TenantConnection, transaction_as
from syntera.embedded import StackUrls
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.ratelimit import Limiters
from syntera.tenancy import Principal


@dataclass
class Stores:
    """The open connections of one API process."""

    postgres: AsyncConnectionPool[TenantConnection]
    mongo: MongoClient
    redis: aioredis.Redis
    conversations: ConversationStore


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def urls_of(request: Request) -> StackUrls:
    urls: StackUrls = request.app.state.urls
    return urls


def keys_of(request: Request) -> Keys:
    keys: Keys = request.app.state.keys
    return keys


def knowledge_base_of(request: Request) -> KnowledgeBase:
    kb: KnowledgeBase = request.app.state.kb
    return kb


def stores_of(request: Request) -> Stores:
    stores: Stores = request.app.state.stores
    return stores


def limiters_of(request: Request) -> Limiters:
    limiters: Limiters = request.app.state.limiters
    return limiters


def cache_of(request: Request) -> Cache | None:
    cache: Cache | None = request.app.state.cache
    return cache


@asynccontextmanager
async def system_transaction(request: Request) -> AsyncIterator[TenantConnection]:
    """A transaction as the system (service_role), for the calls whose caller is not a
    user of a company: sign-in, the widget's key lookup, inbound webhooks."""
    async with transaction_as(stores_of(request).postgres, Principal.service()) as conn:
        yield conn
