"""One typed settings object, read from ``SYNTERA_*`` variables and a ``.env`` file."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModelPrice(BaseModel):
    """What a model costs, in dollars per million tokens."""

    prompt: Decimal = Field(ge=0)
    completion: Decimal = Field(ge=0)


# OpenAI's list prices of its two default-sized models (per 1M tokens); any other model
# is priced by SYNTERA_LLM_PRICES, or has no cost recorded.
DEFAULT_PRICES = {
    "gpt-4o-mini": ModelPrice(prompt=Decimal("0.15"), completion=Decimal("0.60")),
    "gpt-4o": ModelPrice(prompt=Decimal("2.50"), completion=Decimal("10.00")),
}


class Settings(BaseSettings):
    """Everything the platform can be told from the outside.

    A store whose URL is unset is the embedded default, started by ``syntera`` under
    ``data_dir``; a store whose URL is set is used as it is and nothing is started.
    """

    model_config = SettingsConfigDict(env_prefix="SYNTERA_", env_file=".env", extra="ignore")

    data_dir: Path = Path(".syntera")

    database_url: str | None = Field(
        default=None, description="Owner connection, used for migrations and operations."
    )
    api_database_url: str | None = Field(
        default=None,
        description="Connection as the low-privilege `authenticator` role, used by the API.",
    )
    system_database_url: str | None = Field(
        default=None,
        description="Connection as the system's login `syntera_system` (a member of "
        "service_role), for workers and service-key requests. Defaults to "
        "SYNTERA_DATABASE_URL where that is set, the embedded stack's otherwise.",
    )
    mongodb_uri: str | None = None
    mongodb_db: str = "syntera"
    mongodb_write_concern: str = Field(
        default="majority",
        pattern=r"^(majority|[0-9])$",
        description="MongoDB write concern `w`: majority (default), or a number of nodes.",
    )
    mongodb_journal: bool = Field(
        default=True, description="MongoDB acknowledges writes once journaled (`j: true`)."
    )
    # The seed's pool settings. No command is buffered while the server is away: an
    # operation fails once no server was selected within the timeout.
    mongodb_max_pool_size: int = Field(default=50, ge=1)
    mongodb_min_pool_size: int = Field(default=10, ge=0)
    mongodb_max_idle_time_ms: int = Field(default=30_000, ge=0)
    mongodb_socket_timeout_ms: int = Field(default=45_000, ge=0)
    mongodb_server_selection_timeout_ms: int = Field(default=30_000, ge=1)
    event_retention_days: int | None = Field(
        default=None, ge=1, description="`syntera maintenance retention` deletes older events."
    )
    archived_retention_days: int | None = Field(
        default=None, ge=1, description="... and conversations archived longer than this."
    )
    message_retention_days: int | None = Field(
        default=None, ge=1, description="Delete messages older than this (a TTL index)."
    )
    work_retention_days: int = Field(
        default=7,
        ge=1,
        description="`syntera maintenance retention` deletes agent replies and insight jobs "
        "finished longer ago (a reply's tokens are kept for the month's budget).",
    )
    redis_url: str | None = None

    jwt_secret: str | None = Field(
        default=None,
        description="HS256 secret of access tokens (a Supabase project's JWT secret works); "
        "generated and kept in the data directory when unset.",
    )
    service_key: str | None = Field(
        default=None, description="Bearer key that runs a request as service_role."
    )
    access_token_lifetime_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    min_password_length: int = Field(default=8, ge=6, le=72)
    sign_in_max_failures: int = Field(
        default=5, ge=1, description="Failed sign-ins per email allowed in the window."
    )
    sign_in_failure_window_s: int = Field(default=900, ge=1)
    jwt_signing: Literal["ES256", "HS256"] = Field(
        default="ES256",
        description="ES256: access tokens signed with the deployment's key (created on first "
        "start, rotated by `syntera auth rotate-key`, public at /auth/v1/.well-known/jwks.json); "
        "HS256: signed with SYNTERA_JWT_SECRET. Tokens of both kinds verify either way.",
    )
    auth_keys_refresh_s: float = Field(
        default=30, gt=0, description="Each API process reloads the signing keys this often."
    )
    auth_confirm_email: bool = Field(
        default=False,
        description="Sign-up sends a confirmation link and unconfirmed users cannot sign in "
        "(off: accounts are confirmed at sign-up, GoTrue's autoconfirm).",
    )
    auth_site_url: str = Field(
        default="http://localhost:3000",
        description="Where links in auth mail lead when no redirect_to is given "
        "(GoTrue's SITE_URL).",
    )
    auth_redirect_urls: str = Field(
        default="",
        description="Comma-separated URLs (or glob patterns such as https://*.example.com/**) "
        "that redirect_to may name, besides the site URL and its paths.",
    )
    public_url: str | None = Field(
        default=None,
        description="This API's public base URL, in the links of auth mail; unset: the URL "
        "of the request when it names this machine, else http://host:port (set it in "
        "production: a client chooses the Host header, so it never makes a link).",
    )
    auth_token_lifetime_s: int = Field(
        default=3600, ge=60, le=7 * 24 * 3600,
        description="Recovery, magic-link, confirmation and email-change tokens expire after this.",
    )  # fmt: skip
    auth_password_change_signs_out_others: bool = Field(
        default=True, description="A password change ends the user's other sessions."
    )
    auth_verify_max_failures: int = Field(
        default=10, ge=1, description="Failed verifications per address (IP or email) per window."
    )
    rate_limit_mail_per_email_s: int = Field(
        default=60, ge=1, description="At most one auth mail per address this often."
    )
    rate_limit_mail_per_ip_per_hour: int = Field(default=30, ge=1)
    smtp_url: str | None = Field(
        default=None,
        description="smtp://user:password@host:587 (STARTTLS when offered; ?tls=required to "
        "insist) or smtps://…:465 (TLS from the start); ?ca_file=PATH trusts a private CA. "
        "Unset: mail is kept in the local outbox under the data directory (`syntera mail`).",
    )
    mail_from: str = Field(default="Syntera <noreply@syntera.localhost>")
    mail_worker_enabled: bool = Field(
        default=True, description="Each API process delivers queued mail."
    )
    redis_timeout_s: float = Field(
        default=0.25, gt=0, description="No request waits longer than this for Redis."
    )
    cache_enabled: bool = Field(default=True, description="Off: every read goes to the store.")
    cache_agent_ttl_s: int = Field(default=300, ge=1)
    cache_conversation_ttl_s: int = Field(default=60, ge=1)
    cache_messages_ttl_s: int = Field(default=120, ge=1)
    rate_limits_enabled: bool = True
    rate_limit_api_per_minute: int = Field(default=1200, ge=1, description="Per user.")
    rate_limit_widget_key_per_minute: int = Field(default=1200, ge=1, description="Per agent.")
    rate_limit_widget_session_per_minute: int = Field(default=30, ge=1)
    rate_limit_sign_in_per_ip_per_minute: int = Field(default=60, ge=1)
    rate_limit_widget_fail_open: bool = Field(
        default=False, description="Let the public widget through when Redis is down."
    )
    rate_limit_users_fail_open: bool = Field(
        default=True, description="Let signed-in users through when Redis is down."
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    rate_limit_typing_per_minute: int = Field(
        default=60, ge=1, description="Typing signals per sender per conversation."
    )

    purge_worker_enabled: bool = Field(
        default=True,
        description="Each API process removes deleted companies' data from the other stores.",
    )
    departure_worker_enabled: bool = Field(
        default=True,
        description="Each API process unassigns the conversations of members who left.",
    )
    purge_lease_s: float = Field(
        default=120, gt=0, description="A purge left this long by its worker is taken over."
    )

    # Live events (Server-Sent Events, fanned out through Redis).
    events_retention_s: float = Field(
        default=900, gt=0, description="How long an event can still be resumed from."
    )
    events_retention_count: int = Field(
        default=10_000, ge=100, description="Events kept per company for resuming."
    )
    events_heartbeat_s: float = Field(default=15, gt=0, le=15)
    events_recheck_s: float = Field(
        default=10, gt=0, le=30, description="How often a stream re-checks its access."
    )
    events_buffer: int = Field(
        default=1000, ge=1, description="Events queued per stream before it is reset."
    )
    events_send_timeout_s: float = Field(
        default=10, gt=0, description="A stream whose client reads nothing this long ends."
    )
    events_retry_ms: int = Field(default=3000, ge=100, description="The reconnect hint.")
    events_streams_per_company: int = Field(
        default=1000, ge=1, description="Open streams of a company's team (GET /v1/events)."
    )
    events_streams_per_user: int = Field(default=10, ge=1)
    events_visitor_streams_per_company: int = Field(
        default=1000,
        ge=1,
        description="Open streams of a company's widget visitors, apart from the team's: "
        "anyone with the public key can open them, and they must not take the team's.",
    )
    events_streams_per_widget_session: int = Field(default=3, ge=1)

    pg_pool_min_size: int = Field(default=2, ge=0)
    pg_pool_max_size: int = Field(default=20, ge=1)
    pg_pool_timeout_s: float = Field(default=10.0, gt=0)
    pg_statement_timeout_ms: int = Field(default=15_000, ge=0)
    pg_transaction_pooler: bool = Field(
        default=False,
        description="The API's URL goes through a transaction pooler (PgBouncer, "
        "Supavisor): its server connections serve other clients between transactions.",
    )
    database_prepared_statements: bool | None = Field(
        default=None,
        description="The API's connections prepare statements they run often (psycopg's "
        "server-side prepared statements). Unset: on for a direct connection, off when "
        "SYNTERA_PG_TRANSACTION_POOLER is set (PgBouncer before 1.21 and Supavisor in "
        "transaction mode do not keep them); true behind PgBouncer >= 1.22 with "
        "max_prepared_statements set.",
    )
    redis_cluster: bool = Field(
        default=False,
        description="SYNTERA_REDIS_URL names a node of a Redis Cluster.",
    )
    worker_database_url: str | None = Field(
        default=None,
        description="A direct connection (not through a pooler) for what needs a session: "
        "the workers' LISTEN. Defaults to SYNTERA_DATABASE_URL.",
    )
    slow_statement_ms: float = Field(
        default=100,
        ge=0,
        description="Statements (and MongoDB operations) slower than this "
        "are logged as JSON lines and counted.",
    )
    size_sample_s: float = Field(
        default=3600,
        ge=0,
        description="The workers record every table's and collection's size this often, "
        "for the operator's growth chart (0: never).",
    )
    backup_dir: Path | None = Field(
        default=None,
        description="Where the operator's console looks for `syntera backup` archives "
        "(default: the data dir's backups folder).",
    )

    # The knowledge base: files, processing, embeddings, vectors.
    kb_storage: Literal["local", "s3"] = Field(
        default="local", description="Where uploaded files are kept (local: the data dir)."
    )
    kb_s3_bucket: str | None = None
    kb_s3_prefix: str = "kb/"
    kb_s3_endpoint_url: str | None = Field(
        default=None, description="An S3-compatible endpoint (MinIO, R2); unset for AWS."
    )
    kb_max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    kb_max_text_bytes: int = Field(
        default=3 * 1024 * 1024, ge=1024, description="UTF-8 text extracted from one file."
    )
    kb_worker_enabled: bool = Field(
        default=True, description="`syntera serve` runs a document worker in each process."
    )
    kb_worker_concurrency: int = Field(default=1, ge=1, le=64)
    kb_lease_s: float = Field(
        default=120, gt=0, description="A claimed document is retried after this much silence."
    )
    kb_max_attempts: int = Field(default=5, ge=1)
    kb_retry_base_s: float = Field(default=10, ge=0, description="Backoff: base * 4^(attempt-1).")
    kb_poll_s: float = Field(default=1.0, gt=0, description="An idle worker looks this often.")
    kb_chunk_tokens: int = Field(default=200, ge=16, le=8192)
    kb_chunk_overlap_tokens: int = Field(default=30, ge=0)
    kb_embedding_provider: Literal["local", "openai"] = "local"
    kb_embedding_batch: int = Field(default=32, ge=1, le=2048)
    kb_embedding_threads: int | None = Field(
        default=None,
        ge=1,
        description="Torch threads of the local model (default: 1 in the shared model "
        "process, whose concurrent queries are batched: bench.model_process measured 9.8 "
        "and 4.7 ms CPU per query at 1 and 16 callers, against 15.8 and 5.9 with 2 threads "
        "on 2 cores; all cores in a process of its own, such as a worker).",
    )
    kb_onnx_queries: bool = Field(
        default=True,
        description="The local model encodes small batches (search queries) with "
        "onnxruntime, from the same weights: bench.model_process measured 7.3 and 5.1 ms "
        "CPU per query at 1 and 16 callers against torch's 24.4 and 7.5 (one thread); "
        "false: torch for everything.",
    )
    kb_preload_model: bool = Field(
        default=True, description="Load the embedding model at start-up (not at the first search)."
    )
    kb_model_loading: Literal["before_serving", "background"] = Field(
        default="before_serving",
        description="before_serving: a process accepts requests once its model is loaded "
        "(bench/startup.py: serving at full rate from the first request); background: "
        "serve at once while it loads (slower for the first seconds).",
    )
    kb_model_process: bool = Field(
        default=True,
        description="`syntera serve` and `up` run the local model in one process of its own, "
        "shared by the API processes (bench/mixed.py: searches no longer stall the other "
        "routes); false: each API process loads its own.",
    )
    kb_model_socket: str | None = Field(
        default=None,
        description="The Unix socket of a running model process; set by `syntera serve`.",
    )
    kb_embedding_dimensions: int = Field(
        default=384, description="Must match the chunks table (384 for pgvector)."
    )
    openai_api_key: str | None = None
    openai_base_url: str | None = Field(
        default=None, description="Any OpenAI-compatible embeddings endpoint."
    )
    openai_embedding_model: str = "text-embedding-3-small"
    kb_vector_store: Literal["pgvector", "pinecone"] = "pgvector"
    pinecone_api_key: str | None = None
    pinecone_index_host: str | None = Field(
        default=None, description="The data-plane host of the Pinecone index."
    )
    kb_search_ef: int = Field(default=100, ge=10, le=1000, description="hnsw.ef_search.")

    # Agents: the chat models that answer, and what their prompts are made of.
    llm_base_url: str | None = Field(
        default=None,
        description="Any OpenAI-compatible chat-completions endpoint (OpenAI, Azure, vLLM, "
        "Ollama, llama.cpp's server); unset: the embedded local model answers.",
    )
    llm_api_key: str | None = None
    llm_timeout_s: float = Field(
        default=30,
        gt=0,
        description="A model that sends nothing for this long (to connect, for its first "
        "token, between two pieces) has failed.",
    )
    llm_models: str = Field(
        default="",
        description="Comma-separated models the endpoint serves (empty: it is asked for "
        "whatever an agent names); an agent naming another is answered by the local model, "
        "and told so.",
    )
    llm_prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description='JSON: {"model": {"prompt": dollars per 1M tokens, "completion": …}}; '
        "a dated snapshot (gpt-4o-mini-2024-07-18) takes its model's price; the local "
        "model costs nothing.",
    )
    llm_local_context_tokens: int = Field(
        default=4096, ge=512, le=8192, description="The local model's context window."
    )
    llm_local_threads: int | None = Field(
        default=None, ge=1, description="llama.cpp's threads (default: every core)."
    )
    agent_max_tokens: int = Field(
        default=512, ge=1, description="An answer's length when the agent sets no max_tokens."
    )
    agent_history_tokens: int = Field(
        default=1024, ge=0, description="The conversation's newest turns kept in a prompt."
    )
    agent_sources: int = Field(
        default=4, ge=0, le=20, description="Knowledge-base chunks put in a prompt, at most."
    )
    agent_min_similarity: float = Field(
        default=0.3,
        ge=-1,
        le=1,
        description="A chunk enters a prompt only if its cosine similarity to the question "
        "is at least this.",
    )
    agent_search_mode: Literal["vector", "hybrid"] = Field(
        default="hybrid",
        description="How an agent searches the knowledge base (hybrid needs pgvector; "
        "with Pinecone, vector).",
    )

    reply_worker_enabled: bool = Field(
        default=True,
        description="Agents answer visitors: each process runs reply workers that write "
        "the answers of enabled agents.",
    )
    reply_worker_concurrency: int = Field(
        default=32,
        ge=1,
        le=1000,
        description="Replies one process writes at once (each mostly waits for its model).",
    )
    reply_company_concurrency: int = Field(
        default=4, ge=1, le=1000, description="Replies one company's agents write at once."
    )
    reply_lease_s: float = Field(
        default=120, gt=0, description="How long a reply being written stays a worker's."
    )
    reply_max_attempts: int = Field(
        default=3, ge=1, le=20, description="Tries of a reply before it is given up."
    )
    reply_delta_interval_s: float = Field(
        default=0.05,
        ge=0,
        le=5,
        description="The answer's pieces go to the streams batched over this long.",
    )

    insights_worker_enabled: bool = Field(
        default=True,
        description="Each process runs a worker that classifies visitors' messages (intent, "
        "sentiment) and summarises conversations.",
    )
    insights_classifier: Literal["embeddings", "model"] = Field(
        default="embeddings",
        description="What gives intent and sentiment: label prototypes over the local "
        "all-MiniLM-L6-v2 embeddings, or the agent's chat model asked for JSON "
        "(bench/insights.py measures both).",
    )
    insights_batch: int = Field(
        default=32, ge=1, le=256, description="Messages one worker round classifies at once."
    )
    insights_settle_s: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long the insights worker waits after a visitor's message before "
        "classifying it: the agent's reply to it goes first, and the messages of that time "
        "are classified in one round (bench/agent_replies.py).",
    )
    insights_lease_s: float = Field(
        default=120, gt=0, description="How long an insight job being done stays a worker's."
    )
    insights_max_attempts: int = Field(
        default=3, ge=1, le=20, description="Tries of an insight job before it is given up."
    )
    summary_every_messages: int = Field(
        default=20,
        ge=0,
        le=100_000,
        description="A long conversation is summarised again every this many messages "
        "(0: only when it ends).",
    )
    summary_max_tokens: int = Field(
        default=160, ge=16, le=2048, description="A summary's length, at most."
    )
    summary_prompt_tokens: int = Field(
        default=4000,
        ge=256,
        le=1_000_000,
        description="A summary's prompt, at most (the local model: also within its window); "
        "the conversation's newest messages that fit.",
    )

    agent_handoff_phrases: str = Field(
        default="human,real person,a person,someone real,representative,operator,"
        "talk to an agent,speak to an agent,live agent,customer service,support team",
        description="Comma-separated: a visitor's message holding one of these (any case) "
        "passes the conversation from the agent to people.",
    )

    # Workflows: the worker that runs them.
    workflow_worker_enabled: bool = Field(
        default=True, description="`syntera serve` runs a workflow worker in each process."
    )
    workflow_worker_concurrency: int = Field(default=2, ge=1, le=64)
    workflow_lease_s: float = Field(default=60, gt=0)
    workflow_max_attempts: int = Field(default=5, ge=1)
    workflow_poll_s: float = Field(
        default=1.0, gt=0, description="Idle workers look this often (NOTIFY wakes them)."
    )
    workflow_max_depth: int = Field(
        default=3, ge=0, description="Workflows started by workflows' actions, at most."
    )
    workflow_webhook_allow_private: bool = Field(
        default=False,
        description="Let send_webhook reach private, loopback and link-local addresses.",
    )

    # The data API (/rest/v1), PostgREST's grammar over the exposed schemas.
    rest_schemas: str = Field(
        default="public",
        description="Comma-separated schemas /rest/v1 serves; the first is the default "
        "(Accept-Profile / Content-Profile pick another).",
    )
    rest_anon_role: str = Field(
        default="anon", min_length=1, description="The role of a /rest/v1 request without a token."
    )
    rest_max_rows: int | None = Field(
        default=1000,
        ge=1,
        description="At most this many rows in one /rest/v1 answer (Supabase's default; "
        "unset for PostgREST's none).",
    )
    rest_tx_end: Literal["commit", "commit-allow-override"] = Field(
        default="commit",
        description="commit-allow-override honours `Prefer: tx=rollback` (PostgREST's "
        "db-tx-end), for tests.",
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks of the reverse proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed; none by default, so a client "
        "cannot choose the address that per-address limits count.",
    )

    @property
    def prepared_statements(self) -> bool:
        """Whether the API's connections use server-side prepared statements: as set, or
        else only where no transaction pooler stands between them and PostgreSQL."""
        if self.database_prepared_statements is not None:
            return self.database_prepared_statements
        return not self.pg_transaction_pooler

    @property
    def auth_redirect_list(self) -> list[str]:
        return [part.strip() for part in self.auth_redirect_urls.split(",") if part.strip()]

    @property
    def handoff_phrase_list(self) -> list[str]:
        """The phrases that pass a conversation to people, lowercased."""
        return [p.strip().lower() for p in self.agent_handoff_phrases.split(",") if p.strip()]

    @property
    def llm_model_list(self) -> list[str]:
        return [part.strip() for part in self.llm_models.split(",") if part.strip()]

    @property
    def rest_schema_list(self) -> list[str]:
        """The schemas /rest/v1 serves, the default first."""
        return [part.strip() for part in self.rest_schemas.split(",") if part.strip()] or ["public"]

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
