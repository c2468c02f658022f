"""Side by side: this tree's predictor against another checkout's, on one prepared project.

    git worktree add /tmp/before 3eb4038
    python bench/ab_serving.py /tmp/before [--cases d@1,d@32,a@1,a@32] [--rounds 4]
        [--duration 6] [--profile]

Each round starts each server in turn (pinned to core 1, the order swapped every round, since
this machine's speed drifts), runs wrk (core 0) for every case, and records req/s, p50/p99
and the server's CPU per request (from /proc). Cases: `a` one feature row over V1, `d` one
customer id (Feast lookup, SQLite), `e` a 100-row batch; `@N` the concurrency. It prints
each figure and the medians. `--profile` records the first round with py-spy (on PATH),
as collapsed stacks in artifacts/bench/ab-<name>-<case>.txt.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench import serving as bench  # noqa: E402  (prepare, start, wrk)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--cases", default="d@1,d@32,a@1,a@32")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlstack-ab-"))
    prepared = bench.prepare(work)
    shutil.copytree(args.before / "configs", work / "configs-before")
    trees = {
        "before": (args.before.resolve(), work / "configs-before" / "cdnow.yaml"),
        "today": (PROJECT, prepared["config"]),
    }
    scripts = work / "scripts"
    scripts.mkdir()
    names, rows = prepared["names"], prepared["rows"]
    bodies = {
        "a": [bench.v1_rows(names, [row]) for row in rows],
        "d": [
            json.dumps({"instances": [{"customer_id": c}]}).encode() for c in prepared["customers"]
        ],
        "e": [bench.v1_rows(names, rows)],
    }
    script = {case: bench.lua_script(scripts / f"{case}.lua", b) for case, b in bodies.items()}
    cases = [(c.split("@")[0], int(c.split("@")[1])) for c in args.cases.split(",")]
    figures: dict[tuple[str, str], list[dict[str, float]]] = collections.defaultdict(list)
    out = PROJECT / "artifacts" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    for round_ in range(args.rounds):
        for name in list(trees) if round_ % 2 == 0 else list(trees)[::-1]:
            tree, config = trees[name]
            port = bench.free_port()
            command = [str(PROJECT / ".venv" / "bin" / "mlstack"), "--config", str(config)]
            for item in [*prepared["overrides"], f"serving.port={port}"]:
                command += ["--set", item]
            os.environ["PYTHONPATH"] = str(tree)  # the server imports that tree's mlstack
            try:
                server = bench.start(
                    [*command, "serve"],
                    work / f"{name}.log",
                    f"http://127.0.0.1:{port}/v2/models/propensity/ready",
                    cwd=tree,
                )
            finally:
                os.environ.pop("PYTHONPATH")
            url = f"http://127.0.0.1:{port}/v1/models/propensity:predict"
            for case, concurrency in cases:
                bench.wrk(url, script[case], concurrency, 2)  # warm up
                spy = None
                if args.profile and round_ == 0:
                    spy = subprocess.Popen(
                        [
                            "py-spy",
                            "record",
                            "-p",
                            str(server.pid),
                            "-d",
                            str(round(args.duration)),
                            "-r",
                            "200",
                            "-f",
                            "raw",
                            "-o",
                            str(out / f"ab-{name}-{case}{concurrency}.txt"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    time.sleep(1)
                before_cpu = cpu_seconds(server.pid)
                rps, p50, p99, errors = bench.wrk(url, script[case], concurrency, args.duration)
                cpu_ms = 1000 * (cpu_seconds(server.pid) - before_cpu) / max(rps * args.duration, 1)
                if spy is not None:
                    spy.wait()
                row = {"rps": rps, "p50_ms": p50, "p99_ms": p99, "cpu_ms": cpu_ms, "errors": errors}
                figures[(f"{case}@{concurrency}", name)].append(row)
                print(
                    json.dumps(
                        {"round": round_, "tree": name, "case": f"{case}@{concurrency}", **row}
                    ),
                    flush=True,
                )
            bench.stop(server)
    print("\ncase      before req/s  today req/s  change  (medians; CPU ms per request)")
    for case, concurrency in cases:
        key = f"{case}@{concurrency}"
        b, t = figures[(key, "before")], figures[(key, "today")]
        mb = statistics.median(r["rps"] for r in b)
        mt = statistics.median(r["rps"] for r in t)
        cb = statistics.median(r["cpu_ms"] for r in b)
        ct = statistics.median(r["cpu_ms"] for r in t)
        print(
            f"{key:8s} {mb:13,.0f} {mt:12,.0f} {100 * (mt / mb - 1):+6.0f}%  ({cb:.3f} -> {ct:.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
