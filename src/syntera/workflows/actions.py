"""What each action node does. Every action runs as service_role inside the execution's
company: each statement names ``company_id``, so a workflow never reaches another
company's rows (a contact or deal id from elsewhere is simply not found).

Database actions run in the transaction that also records the node's result, so a
retried run never applies them twice. A webhook is sent before its result is recorded:
a worker that dies in between sends it again on retry, with the same
``X-Syntera-Idempotency-Key`` (``<execution>:<node>``) for the receiver to drop the repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import orjson
from psycopg.types.json import Jsonb

from syntera.db.postgres import TenantConnection
from syntera.workflows.graph import (
    CreateDealNode,
    DealStageNode,
    NotificationNode,
    TagNode,
    UpdateContactNode,
    WebhookNode,
)

SIGNATURE_HEADER = "X-Syntera-Signature"
TIMESTAMP_HEADER = "X-Syntera-Timestamp"
IDEMPOTENCY_HEADER = "X-Syntera-Idempotency-Key"


class ActionFailed(Exception):
    """The action cannot be done (its row is gone, its address refused, its call failed)."""


@dataclass(frozen=True)
class Run:
    """What an action knows of the run it belongs to."""

    company_id: UUID
    execution_id: UUID
    workflow_id: UUID
    secret: str
    trigger_data: dict[str, Any]

    def reference(self, name: str) -> UUID:
        value = self.trigger_data.get(name)
        if value is None:
            raise ActionFailed(f"the trigger data has no {name}")
        try:
            return UUID(str(value))
        except ValueError as error:
            raise ActionFailed(f"{name} {value!r} is not a UUID") from error


async def _one(
    conn: TenantConnection, query: str, params: dict[str, Any], what: str
) -> dict[str, Any]:
    row = await (await conn.execute(query, params)).fetchone()
    if row is None:
        raise ActionFailed(f"{what} not found in this company")
    return dict(row)


async def tag(conn: TenantConnection, run: Run, node: TagNode) -> dict[str, Any]:
    contact_id = run.reference("contact_id")
    if node.type == "add_tag":
        change = "CASE WHEN %(tag)s = ANY(tags) THEN tags ELSE array_append(tags, %(tag)s) END"
    else:
        change = "array_remove(tags, %(tag)s)"
    row = await _one(
        conn,
        f"UPDATE public.contacts SET tags = {change}"
        " WHERE company_id = %(company_id)s AND id = %(id)s RETURNING tags",
        {"tag": node.config.tag, "company_id": run.company_id, "id": contact_id},
        "the contact",
    )
    return {"contact_id": str(contact_id), "tags": row["tags"]}


async def update_contact(
    conn: TenantConnection, run: Run, node: UpdateContactNode
) -> dict[str, Any]:
    from syntera.crm.service import CONTACTS

    contact_id = run.reference("contact_id")
    changes = node.config.fields.changes()
    row = await CONTACTS.table.update(conn, run.company_id, contact_id, changes)
    if row is None:
        raise ActionFailed("the contact not found in this company")
    return {"contact_id": str(contact_id), "changed": sorted(changes)}


async def create_deal(conn: TenantConnection, run: Run, node: CreateDealNode) -> dict[str, Any]:
    contact = run.trigger_data.get("contact_id")
    row = await _one(
        conn,
        "INSERT INTO public.deals (company_id, contact_id, title, value, stage)"
        " VALUES (%(company_id)s, %(contact_id)s, %(title)s, %(value)s, %(stage)s) RETURNING id",
        {
            "company_id": run.company_id,
            "contact_id": run.reference("contact_id") if contact else None,
            "title": node.config.title,
            "value": node.config.value,
            "stage": node.config.stage,
        },
        "the deal",
    )
    return {"deal_id": str(row["id"])}


async def update_deal_stage(
    conn: TenantConnection, run: Run, node: DealStageNode
) -> dict[str, Any]:
    deal_id = run.reference("deal_id")
    await _one(
        conn,
        "UPDATE public.deals SET stage = %(stage)s"
        " WHERE company_id = %(company_id)s AND id = %(id)s RETURNING id",
        {"stage": node.config.stage, "company_id": run.company_id, "id": deal_id},
        "the deal",
    )
    return {"deal_id": str(deal_id), "stage": node.config.stage}


async def notify(conn: TenantConnection, run: Run, node: NotificationNode) -> dict[str, Any]:
    if node.config.to == "managers":
        recipients = "role IN ('owner', 'admin')"
        params: dict[str, Any] = {}
    else:
        recipients = "id = %(user_id)s"
        params = {"user_id": node.config.to}
    cursor = await conn.execute(
        "INSERT INTO public.notifications (company_id, user_id, type, title, body, data)"
        " SELECT company_id, id, 'workflow', %(title)s, %(message)s, %(data)s"
        f" FROM public.users WHERE company_id = %(company_id)s AND {recipients}"
        " RETURNING user_id",
        {
            **params,
            "company_id": run.company_id,
            "title": node.config.title,
            "message": node.config.message,
            "data": Jsonb(
                {"workflow_id": str(run.workflow_id), "execution_id": str(run.execution_id)}
            ),
        },
    )
    users = [str(row["user_id"]) for row in await cursor.fetchall()]
    if not users:
        raise ActionFailed("no such user in this company")
    return {"notified": users}


# Webhooks -------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>.<body>")."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified
    )  # fmt: skip


async def check_destination(url: str, allow_private: bool) -> None:
    """Refuse URLs whose host resolves to a private, loopback, link-local or otherwise
    internal address (the server's own network), unless configuration allows it."""
    host = urlsplit(url).hostname
    if host is None:
        raise ActionFailed(f"{url} has no host")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as error:
        raise ActionFailed(f"cannot resolve {host}: {error}") from error
    refused = sorted({str(info[4][0]) for info in infos if _forbidden(str(info[4][0]))})
    if refused:
        raise ActionFailed(f"{host} resolves to a private address ({', '.join(refused)}): refused")


async def send_webhook(
    http: httpx.AsyncClient, run: Run, node: WebhookNode, allow_private: bool
) -> dict[str, Any]:
    await check_destination(node.config.url, allow_private)
    body = orjson.dumps(
        {
            "workflow_id": str(run.workflow_id),
            "execution_id": str(run.execution_id),
            "node_id": node.id,
            "data": run.trigger_data,
        }
    )
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(run.secret, timestamp, body),
        TIMESTAMP_HEADER: timestamp,
        IDEMPOTENCY_HEADER: f"{run.execution_id}:{node.id}",
    }
    try:
        response = await http.post(
            node.config.url, content=body, headers=headers, timeout=node.config.timeout_s
        )
    except httpx.HTTPError as error:
        raise ActionFailed(f"POST {node.config.url}: {type(error).__name__}: {error}") from error
    if response.is_redirect:
        raise ActionFailed(
            f"POST {node.config.url} answered a redirect ({response.status_code}); not followed"
        )
    if response.status_code >= 300:
        raise ActionFailed(f"POST {node.config.url} answered {response.status_code}")
    return {"status": response.status_code}
