"""Building blocks of the request and response bodies of /v1."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

MAX_JSON_KEYS = 100


class Input(BaseModel):
    """A request body: unknown fields are refused (422 naming them), never ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    def changes(self) -> dict[str, Any]:
        """The fields the client sent (PATCH semantics: absent means unchanged)."""
        return self.model_dump(exclude_unset=True)


class Output(BaseModel):
    """A response body."""


def _bounded_object(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_JSON_KEYS:
        raise ValueError(f"at most {MAX_JSON_KEYS} keys")
    return value


def _document_keys(value: Any, depth: int = 0) -> None:
    if depth > 20:
        raise ValueError("nested more than 20 levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key or key.startswith("$") or "." in key:
                raise ValueError(f"key {key!r}: no NUL, no leading '$', no '.' in keys")
            _document_keys(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _document_keys(item, depth + 1)
    elif isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ValueError("integers must fit in 64 bits")


def _storable_document(value: dict[str, Any]) -> dict[str, Any]:
    _document_keys(value)
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=20_000)]
Email = Annotated[
    str,
    StringConstraints(
        max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", to_lower=True, strip_whitespace=True
    ),
]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ()\-.]{3,40}$")]
Url = Annotated[str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s]+$")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=r"^[^,{}\"\\]+$")]
Tags = Annotated[list[Tag], Field(max_length=50)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_bounded_object)]
# A JSON object kept in MongoDB, whose keys cannot hold NUL, start with '$' or contain '.'.
DocumentObject = Annotated[JsonObject, AfterValidator(_storable_document)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=100)]


def storable_time(value: datetime) -> datetime:
    """``value`` if every store can hold it: its UTC instant lies within the years 1 to
    9999 (``9999-12-31T23:59:59-23:59`` does not; PyMongo, which converts to UTC, fails
    on it). A time without an offset is taken as UTC."""
    try:
        (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError as error:
        raise ValueError("is outside the years 1 to 9999 in UTC") from error
    return value


# A time a query or cursor names, bounded to what every store can compare against.
StorableTime = Annotated[datetime, AfterValidator(storable_time)]

# A company's intent label (what its visitors' messages are sorted into).
IntentName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")]
