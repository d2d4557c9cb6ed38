"""Python workers sharing one OpenAI quota, without and with Sluice.

Several processes of asyncio tasks send chat completions, shaped as the official ``openai``
package sends them, to the strict mock upstream (examples' MockOpenAi), first on their own,
retrying 429s as that package does (``max_retries=2``, honouring ``retry-after-ms``), then through
``sluice.openai.transport`` on one coordinator. Each phase runs for ``--duration`` seconds, after
which its tasks are cancelled (a task waiting at the coordinator leaves its line). The mock's
figures are read after each phase: upstream 429s, and the tokens it admitted against its TPM.

    python3 examples/python/openai_demo.py --mock http://127.0.0.1:7580 --sluice http://127.0.0.1:7521 \\
        --tpm 40000 --procs 4 --tasks 16 --duration 60

examples/run-python-demo.sh starts the coordinator and the mock, sets the limit, and runs this.
Needs Python 3.9+ with httpx; finds the ``sluice`` package in clients/python of this checkout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients" / "python"))

import httpx  # noqa: E402

import sluice  # noqa: E402

#: The openai package's headers (its version does not matter to the mock or to the transport).
HEADERS = {"Accept": "application/json", "Content-Type": "application/json", "User-Agent": "OpenAI/Python 1.99.0",
           "X-Stainless-Lang": "python", "X-Stainless-Runtime": "CPython", "Authorization": "Bearer sk-demo"}
MAX_RETRIES = 2  # the openai package's default


def sdk_delay(response: httpx.Response, attempt: int) -> float:
    """How long the openai package waits before retrying a 429: ``retry-after-ms``, else
    ``retry-after``, when within 60 s; else 0.5 s doubling to 8 s, less up to 25 % jitter."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            delay = float(response.headers[name]) * scale
        except (KeyError, ValueError):
            continue
        if 0 < delay <= 60:
            return delay
    return min(0.5 * 2 ** attempt, 8.0) * (1 - 0.25 * random.random())


async def worker(args: argparse.Namespace) -> Dict[str, Any]:
    prompts = [json.loads(line)["prompt"] for line in Path(args.prompts).read_text().splitlines() if line.strip()]
    mine = prompts[args.shard::args.procs]
    counts = {"done": 0, "worker_429s": 0, "failed": 0}
    coordinator: Optional[sluice.AsyncClient] = None
    if args.sluice:
        coordinator = sluice.AsyncClient(args.sluice, lane="batch", timeout=600)
        transport: Any = sluice.openai.transport(coordinator, args.resource)
    else:
        transport = httpx.AsyncHTTPTransport()
    http = httpx.AsyncClient(base_url=args.mock + "/v1", transport=transport, headers=HEADERS, timeout=60)

    async def task(n: int) -> None:
        i = n
        while True:
            body = json.dumps({"model": "gpt-4o-mini", "max_tokens": args.max_tokens,
                               "messages": [{"role": "user", "content": mine[i % len(mine)]}]}).encode()
            i += args.tasks
            for attempt in range(MAX_RETRIES + 1):
                r = await http.post("/chat/completions", content=body)
                if r.status_code != 429:
                    break
                counts["worker_429s"] += 1
                if attempt < MAX_RETRIES:
                    await asyncio.sleep(sdk_delay(r, attempt))
            if r.status_code == 200:
                counts["done"] += 1
            else:
                counts["failed"] += 1

    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    start = time.monotonic()
    tasks = [asyncio.ensure_future(task(n)) for n in range(args.tasks)]
    await asyncio.sleep(args.duration)
    for t in tasks:
        t.cancel()  # waiting at the coordinator: the waiter leaves its line
    await asyncio.gather(*tasks, return_exceptions=True)
    await http.aclose()
    if coordinator is not None:
        await coordinator.aclose()
    counts["wall_ms"] = round((time.monotonic() - start) * 1000)
    return counts


def phase(args: argparse.Namespace, with_sluice: bool) -> Dict[str, Any]:
    httpx.post(args.mock + "/mock/reset", timeout=10).raise_for_status()
    start_at = time.time() + 2.0  # every process starts its tasks at once, once all have started
    common = [sys.executable, __file__, "--worker", "--mock", args.mock, "--prompts", args.prompts,
              "--procs", str(args.procs), "--tasks", str(args.tasks), "--duration", str(args.duration),
              "--max-tokens", str(args.max_tokens), "--resource", args.resource, "--start-at", str(start_at)]
    if with_sluice:
        common += ["--sluice", args.sluice]
    procs = [subprocess.Popen(common + ["--shard", str(i)], stdout=subprocess.PIPE, text=True)
             for i in range(args.procs)]
    results = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a worker failed (exit {p.returncode}); its output: {out}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    mock = httpx.get(args.mock + "/mock/stats", timeout=10).json()
    upstream_429s = mock["rejected"]["requests"] + mock["rejected"]["tokens"]
    return {"sluice": with_sluice, "done": sum(r["done"] for r in results),
            "worker_429s": sum(r["worker_429s"] for r in results), "failed": sum(r["failed"] for r in results),
            "upstream_429s": upstream_429s, "admitted_tokens": mock["estimated_tokens"],
            "tpm_share": mock["estimated_tokens"] / (args.tpm * args.duration / 60.0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mock", required=True, help="the mock upstream, e.g. http://127.0.0.1:7580")
    p.add_argument("--sluice", help="a coordinator's HTTP URL; without it only the phase without Sluice runs")
    p.add_argument("--resource", default="openai")
    p.add_argument("--tpm", type=int, default=40_000, help="the mock's TPM, to state the share used")
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--tasks", type=int, default=16, help="asyncio tasks per process")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    p.add_argument("--max-tokens", type=int, default=60)
    p.add_argument("--prompts", default=str(ROOT / "examples" / "data" / "prompts.jsonl"))
    p.add_argument("--summary", help="write both phases' figures here as JSON")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(args))))
        return
    rows = []
    for with_sluice in ([False, True] if args.sluice else [False]):
        print(f"{'with' if with_sluice else 'without'} Sluice: {args.procs} processes x {args.tasks} asyncio tasks,"
              f" {args.duration:g} s...", flush=True)
        rows.append(phase(args, with_sluice))
    print()
    print(f"{'':34}" + "".join(f"{'with Sluice' if r['sluice'] else 'without Sluice':>18}" for r in rows))
    for label, key, fmt in (("requests done", "done", "{:d}"), ("429s seen by the upstream", "upstream_429s", "{:d}"),
                            ("429s seen by the workers", "worker_429s", "{:d}"),
                            ("calls failed (429 after retries)", "failed", "{:d}"),
                            (f"tokens admitted / TPM ({args.tpm})", "tpm_share", "{:.1%}")):
        print(f"{label:34}" + "".join(f"{fmt.format(r[key]):>18}" for r in rows))
    if args.summary:
        Path(args.summary).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
