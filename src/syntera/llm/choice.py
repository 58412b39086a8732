"""Which model answers an agent: the configured endpoint, or the local model.

An agent's ``model`` names what it wants. With ``SYNTERA_LLM_BASE_URL`` set, the endpoint
is asked for it (unless ``SYNTERA_LLM_MODELS`` lists what the endpoint serves and the name
is not among them); the local model answers when the agent names it, and when nothing
configured serves the name, with a note that says so: a reply never pretends to come
from a model that did not write it.
"""

from __future__ import annotations

from dataclasses import dataclass

from syntera.config import Settings
from syntera.llm.local import LOCAL_MODEL, LocalModel, LocalOptions, count_tokens, is_local_name
from syntera.llm.models import ChatModel
from syntera.llm.openai_compatible import OpenAICompatible


@dataclass(frozen=True)
class ModelChoice:
    """The model that will answer, the name it is asked for, and, when it is not the
    agent's, why (shown to the agent's team)."""

    model: ChatModel
    name: str
    note: str | None = None


@dataclass
class ChatModels:
    """The models of one process: the endpoint (if configured) and the local model."""

    local: ChatModel
    endpoint: ChatModel | None = None
    endpoint_models: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatModels:
        """The configured endpoint, and the local model in the shared model process (when
        ``SYNTERA_KB_MODEL_SOCKET`` names one) or in this process."""
        local: ChatModel
        if settings.kb_model_socket is not None:
            from syntera.kb.model_process import RemoteChat

            local = RemoteChat(settings.kb_model_socket, settings.llm_timeout_s)
        else:
            options = LocalOptions(settings.llm_local_context_tokens, settings.llm_local_threads)
            local = LocalModel(options, settings.llm_timeout_s)
        endpoint = None
        if settings.llm_base_url:
            endpoint = OpenAICompatible(
                settings.llm_base_url, settings.llm_api_key, settings.llm_timeout_s, count_tokens
            )
        return cls(local, endpoint, tuple(settings.llm_model_list))

    def choose(self, wanted: str) -> ModelChoice:
        """The model that answers an agent whose ``model`` is ``wanted``."""
        if is_local_name(wanted):
            return ModelChoice(self.local, LOCAL_MODEL)
        if self.endpoint is not None:
            if not self.endpoint_models or wanted in self.endpoint_models:
                return ModelChoice(self.endpoint, wanted)
            note = (
                f"{wanted} is not among the models of the configured endpoint "
                f"(SYNTERA_LLM_MODELS: {', '.join(self.endpoint_models)}); "
                f"the local model {LOCAL_MODEL} answered instead"
            )
        else:
            note = (
                f"{wanted} is not served here: no model endpoint is configured "
                f"(SYNTERA_LLM_BASE_URL); the local model {LOCAL_MODEL} answered instead"
            )
        return ModelChoice(self.local, LOCAL_MODEL, note)
