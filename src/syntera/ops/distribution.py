"""How the stores spread past one machine: which PostgreSQL tables Citus distributes by
``company_id``, which it replicates to every node, which stay on the coordinator, and the
shard keys of the MongoDB collections. ``syntera db distribution-plan`` and ``syntera db
shard-plan`` print the commands; ``tests/db/test_distribution.py`` checks the schema
against Citus's rules, so a migration that breaks them fails.
"""

from __future__ import annotations

from syntera.conversations.store import SHARD_KEYS

DISTRIBUTION_COLUMN = "company_id"

# Replicated to every node: small, read by every tenant's queries, or global by nature.
# auth.users and public.users are one row per person, and a person may belong to no
# company yet (no distribution value); companies is the tenant list itself, which
# public.users references; sessions, refresh tokens and operators follow their user; the
# widget keys are looked up by digest before the company is known; deleted companies'
# ids are checked whenever a company is created.
# In foreign-key order: a table comes after those it references.
REFERENCE_TABLES = (
    "auth.users",
    "public.companies",
    "public.users",
    "syntera.widget_keys",
    "syntera.deleted_companies",
    "syntera.auth_sessions",
    "syntera.refresh_tokens",
    "syntera.auth_tokens",
    "syntera.operators",
)

# Each company's data, distributed by company_id and co-located (a tenant's rows of every
# table live on the same node, so joins and foreign keys between them stay local).
# In foreign-key order.
DISTRIBUTED_TABLES = (
    "public.agent_configs",
    "public.contacts",
    "public.workflows",
    "public.invitations",
    "public.notifications",
    "public.deals",
    "public.knowledge_base_documents",
    "public.knowledge_base_chunks",
    "public.call_recordings",
    "public.call_history",
    "public.analytics_events",
    "public.workflow_executions",
    "public.workflow_events",
    "public.saved_replies",
    "public.message_search",
    "syntera.insight_jobs",
    "syntera.agent_replies",
    "syntera.member_departures",
)

# On the coordinator only: the migrations ledger, the purge queue (claimed across
# companies, and about companies whose rows are gone), the mail queue, the signing keys,
# the operator's size history and the map of who writes which column.
LOCAL_TABLES = (
    "syntera.schema_migrations",
    "syntera.column_access",
    "syntera.purges",
    "syntera.mail_outbox",
    "syntera.signing_keys",
    "syntera.size_samples",
)

CITUS_DOCS = {
    "distributed tables": "https://docs.citusdata.com/en/stable/develop/api_udf.html#create-distributed-table",
    "reference tables": "https://docs.citusdata.com/en/stable/develop/api_udf.html#create-reference-table",
    "primary keys and unique constraints": "https://docs.citusdata.com/en/stable/develop/reference_ddl.html#constraints",
    "foreign keys": "https://docs.citusdata.com/en/stable/develop/reference_ddl.html#foreign-keys",
}  # fmt: skip


def citus_plan() -> list[str]:
    """The statements that turn a migrated database into a Citus cluster's, in order."""
    lines = ["CREATE EXTENSION IF NOT EXISTS citus;"]
    lines += [f"SELECT create_reference_table('{table}');" for table in REFERENCE_TABLES]
    first, *rest = DISTRIBUTED_TABLES
    lines.append(f"SELECT create_distributed_table('{first}', '{DISTRIBUTION_COLUMN}');")
    lines += [
        f"SELECT create_distributed_table('{table}', '{DISTRIBUTION_COLUMN}',"
        f" colocate_with => '{first}');"
        for table in rest
    ]
    return lines


def mongo_shard_plan(database: str) -> list[str]:
    """The mongosh commands that shard the conversation collections by tenant, and an
    example zone that keeps one large tenant's range on shards of its own."""
    lines = [f'sh.enableSharding("{database}");']
    for collection, keys in SHARD_KEYS.items():
        key = ", ".join(f"{field}: {order}" for field, order in keys)
        lines.append(f'sh.shardCollection("{database}.{collection}", {{ {key} }});')
    lines.append("// A large tenant on its own shards (zone sharding), for each collection:")
    lines.append('// sh.addShardToZone("shard-big-1", "tenant-<company_id>");')
    for collection, keys in SHARD_KEYS.items():
        lower = ", ".join(_bound(field, "MinKey") for field, _ in keys)
        upper = ", ".join(_bound(field, "MaxKey") for field, _ in keys)
        lines.append(
            f'// sh.updateZoneKeyRange("{database}.{collection}", {{ {lower} }},'
            f' {{ {upper} }}, "tenant-<company_id>");'
        )
    return lines


def _bound(field: str, extreme: str) -> str:
    value = '"<company_id>"' if field == DISTRIBUTION_COLUMN else extreme
    return f"{field}: {value}"
