"""What a live event is: its type, the company and conversation it belongs to, and its
resumable id.

An event's ``data`` is the object exactly as the REST API returns it (a conversation, a
message), or for ``typing`` who is typing. The id is the Redis stream entry id
(``<ms>-<seq>``), so ids of one company increase in the order the changes committed;
``typing`` is never stored and carries no id (a reconnecting client does not lose its
position to it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, get_args
from uuid import UUID

import orjson

from syntera.errors import field_error

EventType = Literal[
    "conversation.started",
    "conversation.updated",
    "conversation.ended",
    "conversation.archived",
    "message.created",
    "message.reaction",
    "message.read",
    "message.updated",
    "typing",
    "message.delta",
    "note.created",
    "note.deleted",
]
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)

# What a visitor in the widget may receive about their own chat: the messages (as the
# widget's REST API returns them), typing, and that the chat has ended. Not
# conversation.updated: tags, summary, contact and metadata are the team's notes; never
# note.*: private notes are the team's alone.
WIDGET_TYPES: frozenset[str] = frozenset(
    ("message.created", "message.reaction", "message.read", "typing", "message.delta",
     "conversation.ended", "conversation.archived")
)  # fmt: skip
# Of a conversation, what the widget is shown when it ends or is archived.
WIDGET_CONVERSATION_FIELDS = ("id", "status", "ended_at")
# Of a message, what the widget is never shown: the team's reading of it (intent,
# sentiment) and which teammate wrote it.
TEAM_MESSAGE_FIELDS = ("sender_id",)
TEAM_MESSAGE_METADATA = ("intent", "sentiment")


def message_for_visitor(message: dict[str, Any]) -> dict[str, Any]:
    """A message (as JSON) without what only the team may see."""
    shown = {name: value for name, value in message.items() if name not in TEAM_MESSAGE_FIELDS}
    if isinstance(shown.get("metadata"), dict):
        shown["metadata"] = {
            name: value for name, value in shown["metadata"].items()
            if name not in TEAM_MESSAGE_METADATA
        }  # fmt: skip
    return shown


_EVENT_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")

StreamPosition = tuple[int, int]


def parse_event_id(text: str, field_name: str = "Last-Event-ID") -> StreamPosition:
    """A resumable id as (milliseconds, sequence); 422 naming the field otherwise."""
    match = _EVENT_ID.match(text)
    if match is None:
        raise field_error(field_name, "is not an event id this API sent (<ms>-<seq>)")
    return int(match[1]), int(match[2])


def parse_types(text: str | None) -> frozenset[str] | None:
    """The ``types=`` filter (comma-separated); 422 naming an unknown type."""
    if text is None:
        return None
    wanted = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(wanted - set(EVENT_TYPES))
    if unknown:
        raise field_error("types", f"unknown event type {unknown[0]!r}")
    if not wanted:
        raise field_error("types", "names no event type")
    return wanted


@dataclass(frozen=True)
class Event:
    """One event, as published and as sent; ``body`` is its JSON envelope
    ``{type, company_id, conversation_id, at, data}``."""

    type: str
    company_id: UUID
    conversation_id: str
    body: bytes
    id: str | None = None
    position: StreamPosition | None = None
    _frame: list[bytes] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def new(
        cls, event_type: EventType, company_id: UUID, conversation_id: str, data: dict[str, Any]
    ) -> Event:
        envelope = {
            "type": event_type,
            "company_id": str(company_id),
            "conversation_id": conversation_id,
            "at": datetime.now(UTC).isoformat(),
            "data": data,
        }
        return cls(event_type, company_id, conversation_id, orjson.dumps(envelope))

    @classmethod
    def parse(cls, event_id: str | None, body: bytes) -> Event:
        """An event read back from Redis (a stream entry or a published message)."""
        envelope = orjson.loads(body)
        position = parse_event_id(event_id) if event_id else None
        return cls(
            envelope["type"],
            UUID(envelope["company_id"]),
            envelope["conversation_id"],
            body,
            event_id,
            position,
        )

    def for_widget(self) -> Event | None:
        """What a visitor may see of this event: None for what the widget is not shown."""
        if self.type not in WIDGET_TYPES:
            return None
        if self.type == "typing":
            envelope = orjson.loads(self.body)
            envelope["data"].pop("user_id", None)  # which teammate is the team's business
        elif self.type.startswith("conversation."):
            envelope = orjson.loads(self.body)
            conversation = envelope["data"]
            envelope["data"] = {name: conversation.get(name) for name in WIDGET_CONVERSATION_FIELDS}
        elif self.type in ("message.created", "message.reaction", "message.read"):
            envelope = orjson.loads(self.body)
            envelope["data"] = message_for_visitor(envelope["data"])
        else:
            return self
        return replace(self, body=orjson.dumps(envelope), _frame=[])

    def frame(self) -> bytes:
        """The event as Server-Sent Events text (made once, shared by every subscriber)."""
        if not self._frame:
            lines = b"" if self.id is None else b"id: " + self.id.encode() + b"\n"
            self._frame.append(
                lines + b"event: " + self.type.encode() + b"\ndata: " + self.body + b"\n\n"
            )
        return self._frame[0]


def control_frame(name: str, data: dict[str, Any]) -> bytes:
    """A frame that is not a stored event (``reset``, ``end``): no id."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
