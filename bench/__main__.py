"""Every benchmark in one run, summarised in one table against its anchors.

    python -m bench --quick     # under 5 minutes: small sizes, short loads
    python -m bench --full      # the scale runs (about an hour on 2 CPUs)

Each benchmark runs as its own process on its own throw-away embedded stack and writes
its detailed table to bench/results/<name>.json; this command then prints one Markdown
table of the headline figures (what, conditions, median, p95/p99, ratio to the anchor)
and writes it to bench/results/summary.json. Requires wrk (`apt install wrk`).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import RESULTS_DIR, machine, report


@dataclass(frozen=True)
class Step:
    """One benchmark run and how its result becomes summary rows."""

    module: str
    args: list[str]
    results: list[str]
    summarise: Callable[[dict[str, dict[str, Any]]], list[list[str]]]


def number(text: str) -> float:
    return float(text.replace(",", "").rstrip("x"))


def rls_rows(label: str) -> Callable[[dict[str, dict[str, Any]]], list[list[str]]]:
    def rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
        table = {row[0]: row for row in results["rls_at_scale"]["rows"]}
        ours = table["newest20 RLS only (ours)"]
        seed = table.get("newest20 RLS only (seed's policy)")
        out = [[
            f"newest 20 contacts, RLS only vs explicit filter, {label} contacts",
            f"one connection, {ours[1]} runs", ours[2], f"{ours[3]} / {ours[4]}",
            f"{ours[5]} (anchor: within 1.2x)",
        ]]  # fmt: skip
        if seed:
            out.append([
                f"same with the seed's policy form, {label} contacts", f"{seed[1]} runs",
                seed[2], f"{seed[3]} / {seed[4]}", f"{seed[5]} (seed measured 370x at 1M)",
            ])  # fmt: skip
        return out

    return rows


def api_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    conditions = results["api_throughput"]["conditions"].split(";")[1].strip()
    out = []
    for row in results["api_throughput"]["rows"]:
        out.append([
            f"{row[0]} req/s", f"{conditions}; 32 connections, 2 workers", row[2],
            f"{row[3]} (p90) / {row[4]}", f"{row[1]} req/s = {row[8]} of 2,600",
        ])  # fmt: skip
    trips = results["api_round_trips"]["rows"][0][1]
    out.append(["PostgreSQL round trips per GET /v1/contacts/{id}", "libpq trace", trips, "",
                "goal 2"])  # fmt: skip
    return out


def rest_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [
        [row[0], "2 workers, wrk 32 connections", row[4].split(" / ")[0], f"p99 {row[4]}",
         f"{row[1]} req/s vs anchor {row[2]} = {row[3]} (goal 0.8x)"]
        for row in results["rest_vs_anchor"]["rows"]
    ]  # fmt: skip


def conversation_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    out = []
    for row in results["messages_api"]["rows"]:
        out.append([f"{row[0]} req/s", "2 workers, wrk 32 connections", row[2], f"p99 {row[3]}",
                    f"{row[1]} req/s = {row[7]} of raw inserts; errors {row[4]}"])  # fmt: skip
    for row in results["messages_newest_page"]["rows"]:
        out.append([row[0], f"{row[1]} runs", row[2], f"{row[3]} / {row[4]}",
                    f"{row[5]} of the smallest size (anchor: flat)"])  # fmt: skip
    return out


def kb_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    ingest = results["kb_ingestion"]
    raw, pipeline = ingest["rows"]
    out = [[
        "KB ingestion chunks/s (pipeline vs raw model encode)",
        ingest["conditions"].split(";")[1].strip(), pipeline[1], "",
        f"{pipeline[2]} of raw {raw[1]}/s (goal 0.85x)",
    ]]  # fmt: skip
    conditions = ingest["conditions"]
    if "peak RSS" in conditions:
        out.append(["KB worker memory while ingesting", "one worker, model loaded", "", "",
                    conditions[conditions.index("peak RSS") :]])  # fmt: skip
    for row in results["kb_search"]["rows"]:
        out.append([
            f"{row[0]} ({row[1]} chunks)", f"{row[2]} queries, ef_search 100",
            row[3], f"{row[4]} / {row[5]}", f"recall@10 {row[6]} (goal >= 0.98, p95 < 20 ms)",
        ])  # fmt: skip
    for row in results["kb_retrieval_quality"]["rows"]:
        out.append([f"KB retrieval quality, {row[0]} mode", "22 questions with known answers",
                    "", "", f"hit@1 {row[1]}, MRR@5 {row[3]}"])  # fmt: skip
    return out


def mixed_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    mixed = results["mixed_workload"]
    conditions = mixed["conditions"]
    memory = conditions[conditions.index("peak RSS") :]
    out = []
    connections = re.search(r"(\d+) connections each", conditions)
    for row in mixed["rows"]:
        p50, _, p99 = row[4].partition(" / ")
        out.append([f"mixed load: {row[0]}",
                    f"{connections.group(1) if connections else '?'} connections a route",
                    p50, f"p99 {p99}" if p99 else "",
                    f"{row[1]} req/s, {row[3]} of the anchor's {row[2]}, "
                    f"errors {row[6]}"])  # fmt: skip
    out.append(["memory under the mixed load", "2 API processes, the model process", "", "",
                memory])  # fmt: skip
    return out


def workflow_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    burst, paced = results["workflow_throughput"]["rows"]
    return [
        ["workflow events/s, commit to finished execution (3 nodes)", f"{burst[1]} events",
         "", "", burst[2]],
        [f"workflow delay, {paced[0].split(':')[0]}", f"{paced[1]} events", paced[3],
         f"{paced[4]} / {paced[5]}", "reported"],
    ]  # fmt: skip


def realtime_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    delivery = {row[0]: row for row in results["realtime_delivery"]["rows"]}
    capacity = {row[0]: row for row in results["realtime_capacity"]["rows"]}
    steady = next(row for name, row in delivery.items() if name.startswith("Syntera SSE, steady"))
    anchor = delivery["anchor: bare Redis Pub/Sub, same fan-out and rate"]
    conditions = results["realtime_delivery"]["conditions"].split(";")[1].split(",")[0].strip()
    return [
        [f"live event delivery, publication to subscriber, {steady[1]} msg/s",
         conditions, steady[3], f"{steady[4]} / {steady[5]}",
         f"p99 {steady[9]} of bare Redis Pub/Sub ({anchor[5]} ms); Supabase Realtime p99 213; "
         f"lost {steady[8]}"],
        ["live events: most msg/s with p99 under 100 ms", "", "", "",
         capacity["most msg/s with p99 under 100 ms and 0 lost"][1]],
        ["memory per idle event stream (KiB)", "", "", "",
         f"{capacity['memory per idle stream (KiB)'][1]} (goal <= 20)"],
    ]  # fmt: skip


def purge_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = {row[0].strip(): row for row in results["company_purge"]["rows"]}
    purge = next(row for name, row in rows.items() if name.startswith("purge worker"))
    moved = [row for name, row in rows.items() if "MongoDB documents" in name]
    concern = results["write_concern"]["rows"]
    return [
        ["company purge (MongoDB, files, Redis)", purge[0], purge[1], "", purge[3]],
        *[[row[0].strip(), "", row[1], "", f"{row[2]} ({row[3]})"] for row in moved],
        ["write concern majority+j vs w: 1", "", "", "", f"{concern[0][1]} ({concern[0][2]})"],
    ]


def inbox_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    table = results["inbox_first_page"]
    size = re.search(r"with ([\d,]+) conversations", table["conditions"])
    out = []
    for row in table["rows"]:
        out.append([f"inbox: {row[0]}", f"{size.group(1) if size else '?'} conversations",
                    row[2], f"{row[3]} / {row[4]}",
                    f"{row[5]} of GET /v1/contacts?limit=20" + (
                        " (goal p95 <= 50 ms)" if "first page" in row[0] else "")])  # fmt: skip
    return out


def durability_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [[f"store killed: {row[0]}", row[1], "", "", f"lost: {row[2]}"]
            for row in results["store_kills"]["rows"]]  # fmt: skip


def search_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    latency = {row[0]: row for row in results["search_latency"]["rows"]}
    every = latency["all queries"]
    size = results["search_latency"]["conditions"].split(";")[2].strip()
    posting = {row[0]: row for row in results["search_posting_cost"]["rows"]}
    kept, bare = posting["with the index"], posting["anchor: without"]
    return [
        ["message search, GET /v1/conversations/search", size.split(" (")[0], every[2],
         f"{every[3]} / {every[4]}", f"{every[5]}; goal p95 <= 100 ms"],
        ["message posts/s with the search index", "wrk 32 connections", "", "",
         f"{kept[2]}/s = {kept[3]} of {bare[2]}/s without (goal >= 0.90x)"],
    ]  # fmt: skip


def agent_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    out = []
    for row in results["agent_overhead"]["rows"]:
        lost = f"; lost {row[6]}, doubled {row[7]}" if row[6] else ""
        cpu = f"; server CPU {row[5]} ms a turn" if row[5] else ""
        out.append([row[0], f"{row[1]} turns", row[2], f"{row[3]} / {row[4]}",
                    f"{row[8]}{cpu}{lost}"])  # fmt: skip
    return out


def plan(full: bool) -> list[Step]:
    sizes = [10_000, 100_000, 1_000_000] if full else [10_000, 100_000]
    steps = [
        Step("bench.rls", ["--contacts", str(size), "--companies", str(max(10, size // 1000)),
                           "--runs", "300" if full else "100"],
             ["rls_at_scale"], rls_rows(f"{size:,}"))
        for size in sizes
    ]  # fmt: skip
    steps += [
        Step("bench.api", ["--contacts", "100000" if full else "10000",
                           "--duration", "20" if full else "5"],
             ["api_throughput", "api_round_trips"], api_rows),
        Step("bench.rest", ["--contacts", "100000" if full else "10000",
                            "--duration", "20" if full else "5"],
             ["rest_vs_anchor"], rest_rows),
        Step("bench.conversations", ["--sizes", "10000,100000,1000000" if full else "10000",
                                     "--runs", "300" if full else "50"],
             ["messages_api", "messages_newest_page"], conversation_rows),
        Step("bench.kb", ["--documents", "40" if full else "6",
                          "--chunks", "100000" if full else "10000"],
             ["kb_ingestion", "kb_search"], lambda r: []),
        Step("bench.kb_eval", [], ["kb_retrieval_quality"], kb_rows),
        Step("bench.mixed", ["--duration", "60" if full else "10",
                             "--contacts", "100000" if full else "10000"],
             ["mixed_workload"], mixed_rows),
        Step("bench.workflows", ["--events", "2000" if full else "300"],
             ["workflow_throughput"], workflow_rows),
        Step("bench.realtime", ["--subscribers", "1000" if full else "300",
                                "--companies", "100" if full else "30",
                                "--duration", "20" if full else "5",
                                "--step-duration", "6" if full else "3"],
             ["realtime_delivery", "realtime_capacity"], realtime_rows),
        Step("bench.purge", ["--messages", "100000" if full else "10000",
                             "--contacts", "200000" if full else "2000",
                             "--archive-messages", "1000000" if full else "20000"],
             ["company_purge", "write_concern"], purge_rows),
        Step("bench.search", [] if full else ["--quick"],
             ["search_latency", "search_posting_cost"], search_rows),
        Step("bench.inbox", ["--conversations", "100000" if full else "10000",
                             "--runs", "300" if full else "50"],
             ["inbox_first_page"], inbox_rows),
        Step("bench.durability", ["--before", "5" if full else "2", "--after", "2"],
             ["store_kills"], durability_rows),
        # Visitors who read the answer before they ask again (2 s, ±50%), as the goal's
        # figure is measured: without pauses 20 chats saturate 2 CPUs (see its docstring).
        Step("bench.agents", ["--replies", "--turns", "1000" if full else "100",
                              "--single-turns", "100" if full else "20",
                              "--handoffs", "40" if full else "10", "--think-s", "2"],
             ["agent_overhead"], agent_rows),
    ]  # fmt: skip
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true", help="under 5 minutes")
    mode.add_argument("--full", action="store_true", help="the scale runs")
    args = parser.parse_args()
    started = time.monotonic()
    collected: dict[str, dict[str, Any]] = {}
    rows: list[list[str]] = []
    failures = []
    for step in plan(args.full):
        print(f"\n## python -m {step.module} {' '.join(step.args)}", flush=True)
        done = subprocess.run([sys.executable, "-m", step.module, *step.args], check=False)
        if done.returncode != 0:
            failures.append(step.module)
            continue
        for name in step.results:
            collected[name] = json.loads((RESULTS_DIR / f"{name}.json").read_text())
        try:
            rows += step.summarise(collected)
        except KeyError as missing:  # a figure of an earlier step that failed
            failures.append(f"{step.module} (summary: no {missing} of an earlier step)")
    minutes = (time.monotonic() - started) / 60
    report(
        "summary",
        f"{machine()}; `python -m bench {'--full' if args.full else '--quick'}` in "
        f"{minutes:.1f} min; each benchmark on its own embedded stack; details in "
        f"bench/results/*.json" + (f"; FAILED: {', '.join(failures)}" if failures else ""),
        ["figure", "conditions", "median ms", "p95 / p99 ms", "result vs anchor"],
        rows,
    )
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
