"""Conversations and messages as the API reads and writes them (the seed's models, plus
``company_id`` on every message for isolation)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from syntera.kit.schemas import DocumentObject, Input, Name, Output, Tags, Text

MAX_CONTENT_BYTES = 32 * 1024
MAX_IMPORT = 1000

Channel = Literal["chat", "voice", "email"]
Status = Literal["active", "ended", "archived"]
SenderType = Literal["user", "agent", "system"]
Role = Literal["user", "assistant", "system"]
MessageType = Literal["text", "audio", "file", "image", "event"]


def _within_content_limit(text: str) -> str:
    if len(text.encode()) > MAX_CONTENT_BYTES:
        raise ValueError(f"content is over {MAX_CONTENT_BYTES // 1024} KiB")
    return text


Content = Annotated[
    str, StringConstraints(max_length=MAX_CONTENT_BYTES), AfterValidator(_within_content_limit)
]


class ConversationCreate(Input):
    agent_id: UUID
    channel: Channel = "chat"
    contact_id: UUID | None = None
    tags: Tags = Field(default_factory=list)
    metadata: DocumentObject = Field(default_factory=dict)


class ConversationUpdate(Input):
    contact_id: UUID | None = None
    tags: Tags | None = None
    summary: Text | None = None
    metadata: DocumentObject | None = None


class Thread(Output):
    id: str
    title: str
    created_at: datetime
    message_count: int


class LastMessage(Output):
    """What the inbox shows of a conversation's newest message."""

    id: str
    content_preview: str = Field(description="The first 140 characters.")
    sender_type: SenderType
    sender_id: UUID | None = Field(default=None, description="The teammate who wrote it.")
    sender_name: str | None = Field(
        default=None,
        description="The contact's name (or \"Visitor …\"), the agent's name, or the "
        "teammate's; set in lists and reads (events may leave it null).",
    )
    created_at: datetime


class Rating(Output):
    score: int = Field(ge=1, le=5)
    comment: str | None = None
    rated_at: datetime


class Conversation(Output):
    id: str
    company_id: UUID
    agent_id: UUID
    contact_id: UUID | None = None
    user_id: UUID | None = None
    channel: Channel
    status: Status
    started_at: datetime
    ended_at: datetime | None = None
    tags: list[str]
    threads: list[Thread]
    summary: str | None = None
    summary_updated_at: datetime | None = None
    metadata: dict[str, Any]
    handled_by: Literal["agent", "human"] = Field(
        default="agent", description="Who answers the visitor: the agent or people."
    )
    assignee_id: UUID | None = Field(default=None, description="The member who has it.")
    contact_name: str | None = Field(
        default=None,
        description='The contact\'s name (first and last, else email), or "Visitor" and a '
        "short id for an anonymous chat; set in lists and reads (events may leave it null).",
    )
    last_message: LastMessage | None = None
    last_activity_at: datetime | None = Field(
        default=None, description="The newest message's time (else the start): the list's order."
    )
    message_count: int = 0
    unread_count: int | None = Field(
        default=None,
        description="Messages the signed-in member has not read (null for the service key).",
    )
    rating: Rating | None = Field(default=None, description="The visitor's rating, once ended.")
    handoff_count: int = Field(
        default=0, description="How many times the conversation passed to people."
    )
    handed_off_at: datetime | None = Field(
        default=None, description="When it first passed to people (null: never)."
    )
    created_at: datetime
    updated_at: datetime


class ThreadCreate(Input):
    title: Name


class ThreadUpdate(Input):
    title: Name


class AiMetadata(Input):
    model: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    tokens_used: int = Field(ge=0, le=10_000_000)
    response_time_ms: int = Field(ge=0, le=3_600_000)


class MessageMetadata(Input):
    intent: DocumentObject | None = None
    sentiment: DocumentObject | None = None


class Attachment(Input):
    url: Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://\S+$")]
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    content_type: Annotated[str, StringConstraints(max_length=100)] | None = None
    size_bytes: int | None = Field(default=None, ge=0, le=10**15)


ROLE_OF_SENDER: dict[str, Role] = {"user": "user", "agent": "assistant", "system": "system"}


class MessageCreate(Input):
    """A message; as the seed models it (``sender_type``, ``content``, ``message_type``)
    or with the LLM ``role`` too, which is derived from the sender when left out."""

    sender_type: SenderType
    role: Role = Field(
        default=None,  # type: ignore[arg-type]  # filled in by _role_from_sender
        description="Defaults from sender_type: user → user, agent → assistant, system → system.",
    )
    content: Content
    message_type: MessageType = "text"
    thread_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    attachments: list[Attachment] = Field(default_factory=list, max_length=20)
    ai_metadata: AiMetadata | None = None
    metadata: MessageMetadata = Field(default_factory=MessageMetadata)

    @model_validator(mode="after")
    def _role_from_sender(self) -> MessageCreate:
        if self.role is None:
            self.role = ROLE_OF_SENDER[self.sender_type]
        return self


class MessageImport(Input):
    """Up to 1,000 messages of a conversation's history, inserted in one batch."""

    messages: list[MessageCreate] = Field(min_length=1, max_length=MAX_IMPORT)


class Reaction(Output):
    emoji: str
    user_id: UUID | None = None
    created_at: datetime


class ReadReceipt(Output):
    user_id: UUID
    read_at: datetime


class StoredMessageMetadata(Output):
    intent: dict[str, Any] | None = None
    sentiment: dict[str, Any] | None = None
    reactions: list[Reaction] = Field(default_factory=list)
    citations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Of an agent's answer: the sources it used "
        "({document_id, document_name, chunk_id, score}).",
    )


class Message(Output):
    id: str
    company_id: UUID
    conversation_id: str
    thread_id: str | None = None
    sender_type: SenderType
    role: Role
    content: str
    message_type: MessageType
    attachments: list[dict[str, Any]]
    ai_metadata: dict[str, Any] | None = None
    metadata: StoredMessageMetadata
    read_by: list[ReadReceipt] = Field(default_factory=list)
    sender_id: UUID | None = Field(
        default=None, description="The signed-in teammate who wrote it, if one did."
    )
    created_at: datetime


class ReactionCreate(Input):
    emoji: Annotated[str, StringConstraints(min_length=1, max_length=32)]


class ChannelStats(Output):
    key: str = Field(description="The channel, day (YYYY-MM-DD) or agent id.")
    conversations: int
    average_duration_s: float | None = Field(description="Over ended conversations.")


class SenderStats(Output):
    sender_type: SenderType
    messages: int
    average_response_time_ms: float | None


class ModelStats(Output):
    model: str
    messages: int
    tokens_used: int
    average_response_time_ms: float | None


class ConversationStats(Output):
    since: datetime
    group_by: Literal["channel", "day", "agent"]
    groups: list[ChannelStats]
    messages: list[SenderStats]
    models: list[ModelStats] = Field(description="AI messages per model: tokens used.")


class WidgetSession(Output):
    conversation: Conversation
    session_token: str = Field(description="Send as `X-Widget-Session` with later calls.")


class HandOff(Input):
    to: Literal["agent", "human"] = Field(description="Who answers the visitor from now on.")


class TypingUpdate(Input):
    state: Literal["start", "stop"]


class WidgetMessage(Input):
    content: Content
    message_type: MessageType = "text"
    attachments: list[Attachment] = Field(default_factory=list, max_length=20)


InboxView = Literal["mine", "unassigned", "needs_person"]


class Assignment(Input):
    assignee_id: UUID | None = Field(description="A member of the company; null to clear.")


class NoteCreate(Input):
    body: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]


class Note(Output):
    id: str
    conversation_id: str
    author_id: UUID | None
    author_name: str | None = None
    body: str
    created_at: datetime


class RatingCreate(Input):
    score: int = Field(ge=1, le=5, description="1 (bad) to 5 (excellent).")
    comment: Annotated[str, StringConstraints(max_length=2000)] | None = None


class MemberPresence(Output):
    user_id: UUID
    name: str = Field(description="Their full name (Supabase Auth user_metadata), else email.")
    email: str
    online: bool = Field(description="One of their event streams is open.")
    open_conversations: int = Field(description="Active conversations assigned to them.")
