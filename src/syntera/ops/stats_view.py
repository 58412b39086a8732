"""``syntera db stats`` as tables: what ``syntera.ops.stats`` gathers, for a terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def human_bytes(value: Any) -> str:
    size = float(value or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return str(value)


def table_of(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(*columns, title=title)
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            cells.append(human_bytes(value) if column.endswith("bytes") else str(value))
        table.add_row(*cells)
    return table


def print_stats(console: Console, stats: dict[str, Any]) -> None:
    """Print PostgreSQL's indexes, tables, slowest statements and connections, and
    MongoDB's collections and slowest operations (when MongoDB was reached)."""
    pg = stats["postgres"]
    for index in pg["indexes"]:
        index["never_used"] = "[yellow]never used[/yellow]" if index["never_used"] else ""
    console.print(
        table_of(
            "PostgreSQL indexes (least used first)",
            pg["indexes"],
            ["table", "index", "scans", "tuples_read", "bytes", "never_used"],
        )
    )
    console.print(
        table_of(
            "PostgreSQL tables",
            pg["tables"],
            ["table", "rows_estimate", "total_bytes", "table_bytes", "index_bytes"],
        )
    )
    if pg["slowest_statements"] is None:
        console.print(
            f"[yellow]Slowest statements: {pg['slowest_statements_unavailable']}[/yellow]"
        )
    else:
        console.print(
            table_of(
                "Slowest statements (mean)",
                pg["slowest_statements"],
                ["statement", "calls", "mean_ms", "max_ms", "total_ms"],
            )
        )
    console.print(
        table_of(
            f"Connections (max {pg['max_connections']})",
            pg["connections"],
            ["application", "active", "idle", "idle_in_transaction", "total"],
        )
    )
    if stats["mongodb"]:
        mongo = stats["mongodb"]
        console.print(
            table_of(
                "MongoDB collections",
                mongo["collections"],
                ["collection", "documents", "bytes", "storage_bytes", "index_bytes"],
            )
        )
        console.print(f"MongoDB connections: {mongo['connections']}; profiler {mongo['profiler']}")
        if mongo["slowest_operations"]:
            console.print(
                table_of(
                    "MongoDB slowest operations",
                    mongo["slowest_operations"],
                    ["op", "namespace", "millis", "at"],
                )
            )
