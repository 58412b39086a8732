"""GET /v1/events: a company's live events as Server-Sent Events (``text/event-stream``).

A member (Bearer token, or ``access_token=`` for the browser's EventSource, which cannot
send headers) or the service key with ``X-Company-Id`` receives every event of the
company, optionally narrowed to one conversation and some types. ``Last-Event-ID`` (the
header EventSource sends when it reconnects, or ``last_event_id=``) resumes after that
event. The widget's stream is ``/v1/public/conversations/{id}/events`` (widget routes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, cast

from fastapi import APIRouter, Header, Query, Request

from syntera.api.deps import StreamMember, service_membership
from syntera.api.sse import EventStreamResponse
from syntera.api.state import settings_of, stores_of
from syntera.conversations import service
from syntera.conversations.routes import conversation_store_of
from syntera.events.model import Event, StreamPosition, parse_event_id, parse_types
from syntera.events.presence import user_streams_key
from syntera.events.streams import (
    Events,
    OpenStream,
    Recheck,
    StreamRequest,
    company_scope,
    open_stream,
)
from syntera.unit_of_work import TenantTransaction, open_unit_of_work


def events_of(request: Request) -> Events:
    """This process's live events: publisher, hub, stream slots (made by the lifespan)."""
    return cast(Events, request.app.state.events)


events = APIRouter(prefix="/v1/events", tags=["events"])

STREAM_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "Server-Sent Events: `id:` (resumable), `event:` (the type) and "
        "`data:` `{type, company_id, conversation_id, at, data}`; a `reset` event when "
        "the position asked for is no longer kept; heartbeat comments.",
        "content": {"text/event-stream": {}},
    }
}

EventFilter = Callable[[Event], "Event | None"]

LastEventIdHeader = Annotated[
    str | None,
    Header(alias="Last-Event-ID", max_length=64, description="Resume after this event."),
]
LastEventIdQuery = Annotated[
    str | None, Query(max_length=64, description="`Last-Event-ID`, for clients without headers.")
]


def resume_position(header: str | None, query: str | None) -> StreamPosition | None:
    """Where a stream resumes (the header wins), or None to start with what comes next."""
    if header is not None:
        return parse_event_id(header, "Last-Event-ID")
    if query is not None:
        return parse_event_id(query, "last_event_id")
    return None


def sse_response(request: Request, stream: OpenStream) -> EventStreamResponse:
    """The stream as a response; a client that reads nothing for the send timeout is
    dropped."""
    return EventStreamResponse(
        stream.frames(),
        send_timeout_s=settings_of(request).events_send_timeout_s,
        on_close=stream.close,
    )


@events.get("", status_code=200, response_class=EventStreamResponse, responses=STREAM_RESPONSES)
async def company_events(
    request: Request,
    tx: StreamMember,
    conversation_id: Annotated[
        str | None, Query(max_length=64, description="Only this conversation's events.")
    ] = None,
    types: Annotated[
        str | None, Query(max_length=500, description="Comma-separated event types.")
    ] = None,
    last_event_id: LastEventIdQuery = None,
    last_event_id_header: LastEventIdHeader = None,
) -> EventStreamResponse:
    """Your company's live events: conversations started, updated, ended and archived;
    messages created, reacted to and read; typing."""
    wanted = parse_types(types)
    resume_from = resume_position(last_event_id_header, last_event_id)
    store = conversation_store_of(request)
    if conversation_id is not None:
        conversation = await service.access_conversation(tx, store, conversation_id)
        conversation_id = str(conversation["_id"])
    settings = settings_of(request)
    company_id = tx.company_id
    scopes = [company_scope(company_id, settings.events_streams_per_company)]
    if tx.user_id is not None:
        scopes.append((
            user_streams_key(company_id, tx.user_id),
            settings.events_streams_per_user,
            "per user",
        ))  # fmt: skip
    expiry = tx.principal.claims.get("exp")
    stream = await open_stream(
        events_of(request),
        StreamRequest(
            kind="member",
            company_id=company_id,
            view=member_view(conversation_id, wanted),
            scopes=scopes,
            recheck=member_recheck(request, tx, conversation_id),
            resume_from=resume_from,
            deadline=float(expiry) if isinstance(expiry, int | float) else None,
        ),
    )
    return sse_response(request, stream)


def member_view(conversation_id: str | None, wanted: frozenset[str] | None) -> EventFilter:
    def view(event: Event) -> Event | None:
        if conversation_id is not None and event.conversation_id != conversation_id:
            return None
        if wanted is not None and event.type not in wanted:
            return None
        return event

    return view


def member_recheck(request: Request, tx: TenantTransaction, conversation_id: str | None) -> Recheck:
    """Whether the caller still belongs to the company (and the conversation still is)."""
    pool = stores_of(request).postgres
    store = conversation_store_of(request)
    memo = events_of(request).checks
    caller, company_id = tx.principal, tx.company_id
    named = service_membership(request) if caller.role == "service_role" else None

    async def membership_check() -> str | None:
        company = named.company_id if named else None
        async with open_unit_of_work(pool, caller, company_id=company) as tx:
            membership = tx.membership
            if membership is None or membership.company_id != company_id:
                return "you are no longer a member of this company"
        return None

    async def conversation_check() -> str | None:
        assert conversation_id is not None
        oid = service.object_id(conversation_id, "Conversation")
        if await store.get_conversation(company_id, oid) is None:
            return "the conversation no longer exists"
        return None

    async def recheck() -> str | None:
        reason = await memo.answer(("member", caller.user_id, company_id), membership_check)
        if reason is None and conversation_id is not None:
            reason = await memo.answer(("conversation", company_id, conversation_id),
                                       conversation_check)  # fmt: skip
        return reason

    return recheck


routers = [events]
