"""What one API process holds, read from the request with a type.

``create_app`` puts the configuration on ``app.state`` when the application is made, and
the lifespan adds the open stores; routes and dependencies read them through the
functions here rather than through untyped ``request.app.state`` attributes. What belongs
to one domain (the knowledge base, the conversation store, the event hub, the signing
keys) is read by that domain's routes, through accessors of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from syntera import unit_of_work
from syntera.cache import Cache
from syntera.config import Settings
from syntera.db.mongo import MongoClient
from syntera.db.postgres import TenantConnection
from syntera.db.redis import RedisClient
from syntera.embedded import StackUrls
from syntera.ratelimit import Limiters
from syntera.tenancy import Principal
from syntera.unit_of_work import Publisher


@dataclass
class Stores:
    """The open connections of one API process."""

    postgres: AsyncConnectionPool[TenantConnection]
    mongo: MongoClient
    redis: RedisClient


def _held(request: Request, name: str) -> Any:
    return getattr(request.app.state, name)


def settings_of(request: Request) -> Settings:
    return cast(Settings, _held(request, "settings"))


def urls_of(request: Request) -> StackUrls:
    return cast(StackUrls, _held(request, "urls"))


def stores_of(request: Request) -> Stores:
    return cast(Stores, _held(request, "stores"))


def limiters_of(request: Request) -> Limiters:
    return cast(Limiters, _held(request, "limiters"))


def publisher_of(request: Request) -> Publisher:
    """Where the request's unit of work publishes its live events."""
    return cast(Publisher, _held(request, "publisher"))


# Who a bearer credential stands for; Unauthorized when it stands for no one. Set by the
# application (the auth domain's tokens, over this process's keys): the HTTP layer knows
# no domain.
Authenticate = Callable[[str], Principal]


def authenticate_of(request: Request) -> Authenticate:
    return cast(Authenticate, _held(request, "authenticate"))


def cache_of(request: Request) -> Cache | None:
    return cast("Cache | None", _held(request, "cache"))


@asynccontextmanager
async def system_transaction(request: Request) -> AsyncIterator[TenantConnection]:
    """A transaction as the system (service_role), for the calls whose caller is not a
    user of a company: sign-in, the widget's key lookup, inbound webhooks."""
    async with unit_of_work.system_transaction(stores_of(request).postgres) as conn:
        yield conn
