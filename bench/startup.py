"""Start-up while serving: how fast a freshly started API answers during its first half
minute, with the embedding model loaded before serving (the default) or in the background
beside the first requests, against a server that loads no model (the anchor).

Each server is `syntera serve --workers 2` on the same bench database; from the moment its
/readyz first answers 200, wrk runs GET /v1/contacts/{id} in consecutive windows. Run:
python -m bench.startup [--windows 6 --window 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from bench.api import WRK_SCRIPT, access_token, company_contact_ids, run_wrk, start_server
from bench.common import ROOMY_LIMITS, bench_database, machine, report
from bench.rls import generate, pick_tenant

MODES = {
    "no model (anchor)": {"SYNTERA_KB_PRELOAD_MODEL": "false"},
    "model loaded before serving": {
        "SYNTERA_KB_PRELOAD_MODEL": "true", "SYNTERA_KB_MODEL_LOADING": "before_serving",
    },
    "model loaded in the background": {
        "SYNTERA_KB_PRELOAD_MODEL": "true", "SYNTERA_KB_MODEL_LOADING": "background",
    },
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--window", type=int, default=5, help="Seconds per window.")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    rows = []
    with bench_database(services=("mongodb", "redis")) as db:
        generate(db, args.contacts, 20)
        company_id, owner_id = pick_tenant(db)
        token = access_token(owner_id)
        ids = company_contact_ids(db, company_id, 500)
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "ids.lua"
            script.write_text(WRK_SCRIPT % ", ".join(f'"{i}"' for i in ids))
            steady = {}
            for mode, settings in MODES.items():
                started = time.monotonic()
                server = start_server(db, 2, Path(tmp), {**ROOMY_LIMITS, **settings})
                ready_s = time.monotonic() - started
                try:
                    windows = [
                        run_wrk(server, f"{server.base_url}/v1/contacts/{ids[0]}", token,
                                args.connections, args.window, script)
                        for _ in range(args.windows)
                    ]  # fmt: skip
                    after = run_wrk(server, f"{server.base_url}/v1/contacts/{ids[0]}", token,
                                    args.connections, args.window, script)  # fmt: skip
                    ready = httpx.get(f"{server.base_url}/readyz", timeout=5).status_code
                finally:
                    server.process.terminate()
                    server.process.wait(30)
                steady[mode] = after.requests_per_s
                first = windows[0]
                cpu = [f"{1000 * w.server_cpu_s / max(w.requests, 1):.2f}" for w in windows]
                rows.append([
                    mode,
                    f"{ready_s:.1f}",
                    " / ".join(f"{w.requests_per_s:,.0f}" for w in windows),
                    f"{after.requests_per_s:,.0f}",
                    f"{first.requests_per_s / after.requests_per_s:.2f}",
                    f"{first.p99_ms:.0f} / {after.p99_ms:.0f}",
                    " / ".join(cpu),
                    str(sum(w.errors for w in windows)),
                    str(ready),
                ])  # fmt: skip
    anchor = steady["no model (anchor)"]
    for row, mode in zip(rows, MODES, strict=True):
        row.append(f"{steady[mode] / anchor:.2f}")
    report(
        "api_startup",
        f"{machine()}; `syntera serve --workers 2`, {args.contacts:,} contacts; from the first "
        f"200 of /readyz, wrk -t2 -c{args.connections} GET /v1/contacts/{{id}} in "
        f"{args.windows} windows of {args.window} s, then one more (steady)",
        ["start-up", "s to ready", "req/s per window", "steady req/s", "first / steady",
         "p99 ms first / steady", "CPU ms per request per window", "errors", "/readyz after",
         "steady vs anchor"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()
