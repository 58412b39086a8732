"""Agent configurations as the API reads and writes them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from pydantic import Field, StringConstraints, computed_field

from syntera.kit.schemas import Input, JsonObject, Name, Output, Text, Url

Temperature = Annotated[Decimal, Field(ge=0, le=2, decimal_places=2)]
MaxTokens = Annotated[int, Field(ge=1, le=128_000)]
ModelName = Annotated[str, Field(min_length=1, max_length=100)]
Prompt = Annotated[str, Field(min_length=1, max_length=20_000)]


class AgentCreate(Input):
    name: Name
    description: Text | None = None
    system_prompt: Prompt
    model: ModelName = "gpt-4o-mini"
    temperature: Temperature = Decimal("0.7")
    max_tokens: MaxTokens | None = None
    voice_settings: JsonObject = Field(default_factory=dict)
    enabled: bool = True
    avatar_url: Url | None = None


class AgentUpdate(Input):
    name: Name | None = None
    description: Text | None = None
    system_prompt: Prompt | None = None
    model: ModelName | None = None
    temperature: Temperature | None = None
    max_tokens: MaxTokens | None = None
    voice_settings: JsonObject | None = None
    enabled: bool | None = None
    avatar_url: Url | None = None


class Agent(Output):
    id: UUID
    company_id: UUID
    name: str
    description: str | None
    system_prompt: str
    model: str
    temperature: Decimal
    max_tokens: int | None
    voice_settings: dict[str, Any]
    enabled: bool
    avatar_url: str | None
    created_at: datetime
    updated_at: datetime
    # The stored digest of the widget key; never shown, only whether there is one.
    public_api_key: str | None = Field(default=None, exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def has_public_key(self) -> bool:
        """Whether a widget key exists (the key itself is shown only when created)."""
        return self.public_api_key is not None


class PublicKey(Output):
    agent_id: UUID
    public_key: str = Field(description="Shown once; only its digest is stored.")


class PreviewRequest(Input):
    question: Annotated[
        str, StringConstraints(min_length=1, max_length=20_000, pattern=r"^[^\x00]*$")
    ] = Field(description="A test question, as a visitor would ask it.")


class PreviewSource(Output):
    number: int = Field(description="How the answer cites it: [number].")
    document_id: UUID
    document_name: str
    chunk_id: str
    score: float = Field(description="Cosine similarity to the question.")
    content: str


class PreviewTokens(Output):
    prompt: int
    completion: int
    total: int
    counted: bool = Field(
        description="Counted here with a tokenizer, the model's endpoint having reported none."
    )


class PreviewAnswer(Output):
    answer: str
    model: str = Field(description="The model that really answered.")
    note: str | None = Field(description="Set when that is not the model the agent names, and why.")
    sources: list[PreviewSource]
    tokens: PreviewTokens
    time_to_first_token_ms: float | None
    response_time_ms: float
    cost: Decimal | None = Field(
        description="Dollars, at SYNTERA_LLM_PRICES; null when the model has no price."
    )
