"""What each node does (``apply`` dispatches on its type). Every action runs as
service_role inside the execution's company, through the domains' services: each
statement names ``company_id``, so a workflow never reaches another company's rows (a
contact or deal id from elsewhere is simply not found).

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
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import httpx
import orjson

from syntera.crm import service as crm
from syntera.errors import NotFound
from syntera.notifications import service as notifications
from syntera.unit_of_work import TenantTransaction
from syntera.workflows.graph import (
    ConditionNode,
    CreateDealNode,
    DealStageNode,
    DelayNode,
    EndNode,
    Graph,
    Node,
    NotificationNode,
    TagNode,
    UpdateContactNode,
    WebhookNode,
    holds,
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


def _missing(error: NotFound) -> ActionFailed:
    return ActionFailed(f"the {error.what.lower()} not found in this company")


async def tag(tx: TenantTransaction, run: Run, node: TagNode) -> dict[str, Any]:
    contact_id = run.reference("contact_id")
    try:
        tags = await crm.tag_contact(tx, contact_id, node.config.tag, add=node.type == "add_tag")
    except NotFound as error:
        raise _missing(error) from error
    return {"contact_id": str(contact_id), "tags": tags}


async def update_contact(
    tx: TenantTransaction, run: Run, node: UpdateContactNode
) -> dict[str, Any]:
    contact_id = run.reference("contact_id")
    changes = node.config.fields.changes()
    try:
        await crm.update_contact(tx, contact_id, changes)
    except NotFound as error:
        raise _missing(error) from error
    return {"contact_id": str(contact_id), "changed": sorted(changes)}


async def create_deal(tx: TenantTransaction, run: Run, node: CreateDealNode) -> dict[str, Any]:
    contact = run.trigger_data.get("contact_id")
    deal = await crm.create_deal(
        tx,
        {
            "contact_id": run.reference("contact_id") if contact else None,
            "title": node.config.title,
            "value": node.config.value,
            "stage": node.config.stage,
        },
    )
    return {"deal_id": str(deal["id"])}


async def update_deal_stage(tx: TenantTransaction, run: Run, node: DealStageNode) -> dict[str, Any]:
    deal_id = run.reference("deal_id")
    try:
        await crm.move_deal(tx, deal_id, node.config.stage)
    except NotFound as error:
        raise _missing(error) from error
    return {"deal_id": str(deal_id), "stage": node.config.stage}


async def notify(tx: TenantTransaction, run: Run, node: NotificationNode) -> dict[str, Any]:
    users = await notifications.notify_members(
        tx,
        node.config.to,
        kind="workflow",
        title=node.config.title,
        body=node.config.message,
        data={"workflow_id": str(run.workflow_id), "execution_id": str(run.execution_id)},
    )
    if not users:
        raise ActionFailed("no such user in this company")
    return {"notified": [str(user) for user in users]}


async def apply(
    tx: TenantTransaction,
    run: Run,
    graph: Graph,
    node: Node,
    outside: dict[str, Any] | None,
) -> tuple[dict[str, Any], list[str]]:
    """The node's effect, in the step's transaction; its result and the nodes to run
    next. A webhook was sent before (its answer is ``outside``)."""
    following = graph.successors(node.id)
    match node:
        case ConditionNode():
            outcome = holds(node.config.when, run.trigger_data)
            return {"outcome": outcome}, graph.successors(node.id, outcome)
        case TagNode():
            return await tag(tx, run, node), following
        case UpdateContactNode():
            return await update_contact(tx, run, node), following
        case CreateDealNode():
            return await create_deal(tx, run, node), following
        case DealStageNode():
            return await update_deal_stage(tx, run, node), following
        case NotificationNode():
            return await notify(tx, run, node), following
        case WebhookNode():
            return outside or {}, following
        case DelayNode():
            return {"resume_after_s": node.config.seconds}, following
        case EndNode():
            return {}, []
    return {}, following  # the trigger node is never queued


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


@dataclass(frozen=True)
class Destination:
    """Where a webhook goes: the URL with its host replaced by the address that was
    checked, and what the request must still say about the original host."""

    url: str
    host_header: str
    server_name: str


async def resolve_destination(url: str, allow_private: bool) -> Destination:
    """Resolve the URL's host once and pick the address to connect to; refuse a host any
    of whose addresses is private, loopback, link-local or otherwise internal (the
    server's own network), unless configuration allows it. The request then connects to
    that very address: a second lookup by the HTTP client could answer differently (DNS
    rebinding) and reach an address nobody checked."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:
        raise ActionFailed(f"{url} has no host")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except OSError as error:
        raise ActionFailed(f"cannot resolve {host}: {error}") from error
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise ActionFailed(f"cannot resolve {host}: no address")
    refused = sorted({address for address in addresses if _forbidden(address)})
    if refused and not allow_private:
        raise ActionFailed(f"{host} resolves to a private address ({', '.join(refused)}): refused")
    address = next((a for a in addresses if ":" not in a), addresses[0])  # IPv4 first
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    shown = f"[{host}]" if ":" in host else host
    host_header = f"{shown}:{parts.port}" if parts.port else shown
    pinned = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return Destination(pinned, host_header, host)


async def send_webhook(
    http: httpx.AsyncClient, run: Run, node: WebhookNode, allow_private: bool
) -> dict[str, Any]:
    destination = await resolve_destination(node.config.url, allow_private)
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
        "Host": destination.host_header,
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(run.secret, timestamp, body),
        TIMESTAMP_HEADER: timestamp,
        IDEMPOTENCY_HEADER: f"{run.execution_id}:{node.id}",
    }
    try:
        # TLS still names (and verifies) the original host, through SNI.
        response = await http.post(
            destination.url,
            content=body,
            headers=headers,
            timeout=node.config.timeout_s,
            extensions={"sni_hostname": destination.server_name},
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
