"""The inbox's routes: assignment, reading a whole conversation, private notes, and the
team's presence (/v1/team/presence)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from syntera.api.deps import Member
from syntera.api.state import stores_of
from syntera.conversations import inbox, schemas
from syntera.conversations.routes import ConversationId, CursorText, Limit, Store, _cursor
from syntera.errors import Forbidden
from syntera.kit.pagination import Page

assignments = APIRouter(prefix="/v1/conversations", tags=["inbox"])
team_presence = APIRouter(prefix="/v1/team", tags=["team"])

NoteId = Annotated[str, Path(description="The note's id.")]


@assignments.post("/{conversation_id}/assign", response_model=schemas.Conversation)
async def assign_conversation(
    tx: Member, store: Store, conversation_id: ConversationId, body: schemas.Assignment
) -> schemas.Conversation:
    """Give the conversation to a member of your company (`null`: to nobody);
    `conversation.updated`, and a notification to the member. 422 for anyone who is not
    a member of your company now."""
    return await inbox.assign(tx, store, conversation_id, body.assignee_id)


@assignments.post("/{conversation_id}/read", response_model=schemas.Conversation)
async def read_whole_conversation(
    tx: Member, store: Store, conversation_id: ConversationId
) -> schemas.Conversation:
    """You have read every message of the conversation so far (its `unread_count` is 0)."""
    if tx.user_id is None:
        raise Forbidden("read positions are for signed-in members")
    return await inbox.mark_conversation_read(tx, store, conversation_id)


@assignments.get("/{conversation_id}/notes", response_model=Page[schemas.Note])
async def list_notes(
    tx: Member,
    store: Store,
    conversation_id: ConversationId,
    limit: Limit = 50,
    cursor: CursorText = None,
) -> Page[schemas.Note]:
    """The team's private notes on the conversation, oldest first (never shown to the
    visitor, never given to the agent)."""
    return await inbox.list_notes(tx, store, conversation_id, limit=limit, cursor=_cursor(cursor))


@assignments.post("/{conversation_id}/notes", status_code=201, response_model=schemas.Note)
async def add_note(
    tx: Member, store: Store, conversation_id: ConversationId, body: schemas.NoteCreate
) -> schemas.Note:
    """A private note for the team (`note.created` on the team's stream only)."""
    return await inbox.add_note(tx, store, conversation_id, body.body)


@assignments.delete("/{conversation_id}/notes/{note_id}", status_code=204)
async def delete_note(
    tx: Member, store: Store, conversation_id: ConversationId, note_id: NoteId
) -> Response:
    """Delete a note (`note.deleted`)."""
    await inbox.delete_note(tx, store, conversation_id, note_id)
    return Response(status_code=204)


@team_presence.get("/presence", response_model=list[schemas.MemberPresence])
async def presence(request: Request, tx: Member, store: Store) -> list[schemas.MemberPresence]:
    """Your teammates: who is online (one of their event streams is open) and how many
    active conversations each is assigned."""
    return await inbox.presence(tx, store, stores_of(request).redis)


routers = [team_presence, assignments]
