"""A watch on every command sent to MongoDB during the tests: any read or write of the
tenant collections whose filter does not name ``company_id`` at its top level (first,
or after the ``_id`` of one document, as ``scoped`` puts it), or whose inserted document
has none, is recorded, and the test fails on it. It also holds the store to its
shard keys (``SHARD_KEYS``): a filter must name the shard key's fields in order as far as
it goes, so it targets the shards of one tenant's range — for messages, the conversation
too, except in company-wide aggregations.

Registered globally before any client exists, so it sees the API's own client too.
"""

from __future__ import annotations

from typing import Any

from pymongo import monitoring

from syntera.conversations.store import SHARD_KEYS

TENANT_COLLECTIONS = set(SHARD_KEYS)


def _filters(name: str, command: Any) -> list[Any]:
    if name in ("find", "count", "distinct"):
        return [command.get("filter", command.get("query", {}))]
    if name == "findAndModify":
        return [command.get("query", {})]
    if name == "aggregate":
        pipeline = command.get("pipeline", [])
        return [pipeline[0].get("$match", {}) if pipeline else {}]
    if name == "update":
        return [update["q"] for update in command.get("updates", [])]
    if name == "delete":
        return [delete["q"] for delete in command.get("deletes", [])]
    return []


class TenantFilterWatch(monitoring.CommandListener):
    def __init__(self) -> None:
        self.violations: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        collection = event.command.get(name)
        if not isinstance(collection, str) or collection not in TENANT_COLLECTIONS:
            return
        shard_fields = [field for field, _ in SHARD_KEYS[collection] if field != "_id"]
        if name == "insert":
            for document in event.command.get("documents", []):
                if "company_id" not in document:
                    self.violations.append(f"insert into {collection} without company_id")
                elif any(field not in document for field in shard_fields):
                    self.violations.append(f"insert into {collection} without its shard key")
            return
        for query in _filters(name, event.command):
            if "company_id" not in list(query)[:2] or next(iter(query), None) not in (
                "company_id",
                "_id",
            ):
                self.violations.append(f"{name} on {collection} with filter {dict(query)}")
            elif name != "aggregate" and any(field not in query for field in shard_fields):
                self.violations.append(
                    f"{name} on {collection} without the shard key's {shard_fields}: {dict(query)}"
                )

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


watch = TenantFilterWatch()
monitoring.register(watch)
