"""`make bench`, the serving part: mlstack's predictor against MLServer and the HTTP limit.

    python bench/serving.py [--duration 8] [--json PATH] [--only a,d]

In one run, with one load generator (wrk, closed loop; pinned to core 0) and each server
pinned to core 1 (`taskset -c 1`, OMP_NUM_THREADS=1), it measures throughput and p50/p99
latency at concurrency 1 and 32, and each server's peak RSS, for:

  (a)  mlstack's predictor (KServe ModelServer), V1, one full feature row per request;
  (a2) the same over V2, the same per-column tensors MLServer gets;
  (b)  MLServer 1.7.1 with its scikit-learn runtime (mlserver-sklearn) serving the same
       fitted Pipeline, dumped with joblib (the file format that runtime loads), V2 with the
       pandas codec (the Pipeline selects its columns by name);
  (c)  a bare ASGI JSON echo endpoint (uvicorn, uvloop, httptools, orjson): the HTTP limit;
  (d)  mlstack with the Feast online lookup: `{"customer_id": ...}`, 1,000 ids in rotation;
  (e)  mlstack with a 100-instance batch of feature rows.

The model is the default gradient boosting of the candidates, trained on the full bundled
data; Feast holds the features of every customer (SQLite online store). Targets: (a) at least
2x MLServer's throughput at concurrency 32 with a lower p99; the Feast lookup adds at most
1 ms at p50 (d vs a, concurrency 1); the model's own predict at most a quarter of the request
time (a, concurrency 1). The verdict of each target is printed from the figures measured.

MLServer lives in its own throw-away venv (artifacts/bench/mlserver-venv): mlserver 1.7.1
pins FastAPI below 0.116 while KServe needs a newer one, so the two cannot share the lock.
Its versions are pinned below; scikit-learn, numpy and pandas match ours so the joblib file
loads into the same code.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

MLSERVER_PINS = [
    "mlserver==1.7.1",
    "mlserver-sklearn==1.7.1",
    f"scikit-learn=={metadata.version('scikit-learn')}",
    f"numpy=={metadata.version('numpy')}",
    f"pandas=={metadata.version('pandas')}",
]
MLSERVER_VENV = PROJECT / "artifacts" / "bench" / "mlserver-venv"
SERVER_CORE = "1"
CLIENT_CORE = "0"
START_SECONDS = 180
BATCH = 100
CUSTOMERS = 1000


@dataclass
class Result:
    case: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    peak_rss_mb: float


# -- setup ---------------------------------------------------------------------------------


def prepare(root: Path, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Features of the full data in Feast, the default boosting model registered as champion,
    the same fitted model as a joblib file for MLServer, and sample requests. `extra` are
    further `--set` overrides (another online store, say)."""
    import joblib
    import mlflow
    import numpy as np
    from threadpoolctl import threadpool_limits

    from mlstack.config import load_settings
    from mlstack.data.clean import read_clean
    from mlstack.features import store as feature_store
    from mlstack.features.build import build_features, build_labels
    from mlstack.features.definitions import ENTITY, EVENT_TIMESTAMP, feature_names, label_name
    from mlstack.models.candidates import make_model
    from mlstack.registry import models as registry
    from mlstack.registry import tracking

    shutil.copytree(PROJECT / "configs", root / "configs")
    shutil.copytree(
        PROJECT / "feature_repo",
        root / "feature_repo",
        ignore=shutil.ignore_patterns("data", "__pycache__"),
    )
    overrides = [
        f"root={root}",
        f"source.uri={PROJECT / 'data' / 'cdnow_master.txt.gz'}",
        "serving.reload_interval_seconds=0",
        *extra,
    ]
    settings = load_settings(root / "configs" / "cdnow.yaml", overrides)
    transactions = read_clean(settings)
    features = build_features(transactions, settings)
    feature_store.write_source(features, settings)
    store = feature_store.apply(settings)
    last = features[EVENT_TIMESTAMP].max()
    feature_store.materialize(store, settings.feast, last.to_pydatetime())
    names = feature_names(settings)
    labelled = build_labels(transactions, features[[ENTITY, EVENT_TIMESTAMP]], settings)
    train = features.merge(labelled, on=[ENTITY, EVENT_TIMESTAMP])
    dates = sorted(train[EVENT_TIMESTAMP].unique())[-52::4]
    train = train[train[EVENT_TIMESTAMP].isin(dates)]
    model = make_model("gradient_boosting", None, names)
    with threadpool_limits(1):
        model.fit(train[names], train[label_name(settings.features)])
    client = tracking.configure(settings.mlflow)
    with tracking.training_run(settings.mlflow, "bench-serving"):
        info = tracking.log_model(
            model, "model", train[names].head(20), settings.mlflow.registered_model
        )
    while mlflow.active_run() is not None:
        mlflow.end_run()
    version = str(info.registered_model_version)
    registry.set_alias(
        client, settings.mlflow.registered_model, "champion", version, "bench", "bench"
    )

    mlserver_dir = root / "mlserver" / "propensity"
    mlserver_dir.mkdir(parents=True)
    joblib.dump(model, mlserver_dir / "model.joblib")
    (mlserver_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "propensity",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"},
            }
        )
    )
    online = features[features[EVENT_TIMESTAMP] == last]
    rows = online[names].to_numpy(np.float64)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(rows), size=BATCH, replace=False)
    sample = [[None if math.isnan(v) else float(v) for v in rows[i]] for i in picks]
    customers = online[ENTITY].to_numpy()[rng.choice(len(online), CUSTOMERS, replace=False)]
    return {
        "overrides": overrides,
        "config": root / "configs" / "cdnow.yaml",
        "names": names,
        "rows": sample,
        "customers": [str(c) for c in customers],
        "mlserver_dir": mlserver_dir.parent,
        "version": version,
        "model": model,
        "matrix": rows[picks],
    }


def mlserver_python() -> Path:
    """The throw-away venv with MLServer's pinned versions, created on first use."""
    python = MLSERVER_VENV / "bin" / "python"
    stamp = MLSERVER_VENV / ".pins"
    if not python.exists() or not stamp.exists() or stamp.read_text() != "\n".join(MLSERVER_PINS):
        shutil.rmtree(MLSERVER_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *MLSERVER_PINS,
            ],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        stamp.write_text("\n".join(MLSERVER_PINS))
    return python


# -- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(port: int, log: Path, prefix: tuple[str, ...] = ()) -> subprocess.Popen:
    """A redis-server of its own on loopback `port`, without persistence (its output in
    `log`), once it answers; `prefix`: a command it runs under (``taskset -c N``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("needs redis-server: `make system-deps` installs it")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                *prefix,
                binary,
                *("--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    import redis

    deadline = time.monotonic() + 15
    with redis.Redis(host="127.0.0.1", port=port) as client:
        while True:
            try:
                client.ping()
                return process
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    tail = log.read_text()[-500:]
                    raise SystemExit(f"redis-server did not start: {tail}") from None
                time.sleep(0.05)


FEAST_SET = ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR")
"""Set in this process's environment by importing Feast (`feast.metrics`, for gunicorn's
forked workers) during `prepare`. A server started with them would count its Prometheus
metrics in memory-mapped files, about 2x slower per update, which a pod does not do."""
STARTED_WITH = {name: os.environ.get(name) for name in FEAST_SET}


def pinned_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    for name, value in STARTED_WITH.items():
        if value is None:
            env.pop(name, None)
    return env


def start(args: list[str], log: Path, ready_url: str, cwd: Path | None = None) -> subprocess.Popen:
    import httpx

    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=pinned_env(),
            cwd=cwd,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{args[:3]} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stop(process)
    raise RuntimeError(f"{args[:3]} not ready in {START_SECONDS}s: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def peak_rss_mb(process: subprocess.Popen) -> float:
    """Peak resident memory (VmHWM) of the server and its children, in MB."""
    import psutil

    total = 0
    root = psutil.Process(process.pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except FileNotFoundError:
            continue
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        if found and proc.name() not in ("taskset",):
            total += int(found.group(1))
    return total / 1024


async def _echo(scope: dict, receive: Any, send: Any) -> None:
    """A bare ASGI app: parse the JSON body and send it back."""
    import orjson

    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    payload = orjson.dumps(orjson.loads(body)) if body else b"{}"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def run_echo(port: int) -> None:
    import uvicorn

    uvicorn.run(
        _echo,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


# -- load ------------------------------------------------------------------------------------


def lua_script(path: Path, bodies: list[bytes]) -> Path:
    quoted = ",\n".join(f"[==[{body.decode()}]==]" for body in bodies)
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"local bodies = {{\n{quoted}\n}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[i])\n"
        "end\n"
    )
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def wrk(
    url: str, script: Path, concurrency: int, duration: float
) -> tuple[float, float, float, int]:
    """Throughput (req/s), p50 and p99 (ms) and non-2xx count of a closed-loop run."""
    command = [
        "taskset",
        "-c",
        CLIENT_CORE,
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, p50, p99, errors


def server_means(metrics_url: str | None) -> dict[str, tuple[float, float]]:
    """(sum, count) of mlstack's own histograms: request time and Feast lookup time."""
    import httpx

    if metrics_url is None:
        return {}
    text = httpx.get(metrics_url, timeout=10).text
    found = {}
    for name in ("mlstack_request_seconds", "mlstack_feature_lookup_seconds"):
        total = sum(float(v) for v in re.findall(rf"^{name}_sum(?:{{[^}}]*}})? (\S+)$", text, re.M))
        count = sum(
            float(v) for v in re.findall(rf"^{name}_count(?:{{[^}}]*}})? (\S+)$", text, re.M)
        )
        found[name] = (total, count)
    return found


ONLY: set[str] = set()
"""The cases `--only` asks for (letters and digits, as in "a2"); empty: all of them."""


def wanted(case: str) -> bool:
    return not ONLY or case[1:].split(")")[0] in ONLY


SERVER_SIDE: dict[str, float] = {}
"""Mean milliseconds inside mlstack's server at concurrency 1, by case and histogram."""


def measure(
    case: str,
    process: subprocess.Popen,
    url: str,
    script: Path,
    duration: float,
    metrics_url: str | None = None,
) -> list[Result]:
    if not wanted(case):
        return []
    wrk(url, script, 8, 2)  # warm up: caches, lazy imports, the first Feast lookup
    results = []
    for concurrency in (1, 32):
        before = server_means(metrics_url) if concurrency == 1 else {}
        rps, p50, p99, errors = wrk(url, script, concurrency, duration)
        if before:
            after = server_means(metrics_url)
            for name, (total, count) in after.items():
                done = count - before[name][1]
                if done:
                    SERVER_SIDE[f"{case[:4].strip()} {name}"] = (
                        (total - before[name][0]) / done * 1000
                    )
        results.append(Result(case, concurrency, rps, p50, p99, errors, peak_rss_mb(process)))
        print(
            f"  {case:<34} c={concurrency:<3} {rps:8.0f} req/s"
            f"  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms",
            flush=True,
        )
    return results


# -- bodies ----------------------------------------------------------------------------------


def v1_rows(names: list[str], rows: list[list[float | None]]) -> bytes:
    return json.dumps({"instances": [dict(zip(names, row, strict=True)) for row in rows]}).encode()


def v2_columns(names: list[str], rows: list[list[float | None]], pandas_codec: bool) -> bytes:
    inputs = [
        {"name": name, "shape": [len(rows)], "datatype": "FP64", "data": [row[j] for row in rows]}
        for j, name in enumerate(names)
    ]
    body: dict[str, Any] = {"inputs": inputs}
    if pandas_codec:
        body["parameters"] = {"content_type": "pd"}
        body["outputs"] = [{"name": "predict_proba"}]
    return json.dumps(body).encode()


def model_predict_ms(prepared: dict[str, Any]) -> float:
    """Median time of the served model's own predict on one row, in this process (1 thread)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from mlstack.config import load_settings
    from mlstack.serving import model as served

    settings = load_settings(prepared["config"], prepared["overrides"])
    loaded = served.load(served.resolve(settings), settings.mlflow.tracking_uri)
    row = prepared["matrix"][:1]
    times = []
    with threadpool_limits(1):
        for _ in range(2000):
            started = time.perf_counter()
            loaded.predict(row)
            times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


# -- report ----------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    lines = [
        f"{'case':<36}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'peak RSS MB':>13}"
    ]
    for r in results:
        lines.append(
            f"{r.case:<36}{r.concurrency:>5}{r.rps:>10.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}"
            f"{r.errors:>8}{r.peak_rss_mb:>13.0f}"
        )
    return "\n".join(lines)


def verdicts(results: list[Result], predict_ms: float) -> list[str]:
    get = {(r.case[:3].strip(), r.concurrency): r for r in results}
    a32, b32 = get[("(a)", 32)], get[("(b)", 32)]
    a1, d1 = get[("(a)", 1)], get[("(d)", 1)]
    ratio = a32.rps / b32.rps
    lookup = d1.p50_ms - a1.p50_ms
    share = predict_ms / a1.p50_ms
    return [
        f"(a) vs (b) at c=32: {ratio:.2f}x MLServer's throughput (target >= 2x): "
        f"{'met' if ratio >= 2 else 'NOT met'}; p99 {a32.p99_ms:.2f} vs {b32.p99_ms:.2f} ms "
        f"(target lower): {'met' if a32.p99_ms < b32.p99_ms else 'NOT met'}",
        f"Feast lookup adds {lookup:.2f} ms at p50, c=1 (target <= 1 ms): "
        f"{'met' if lookup <= 1 else 'NOT met'}",
        f"model predict {predict_ms:.3f} ms of a {a1.p50_ms:.2f} ms request at p50, c=1: "
        f"{share:.0%} (target <= 25%): {'met' if share <= 0.25 else 'NOT met'}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--only",
        help="comma-separated cases to run, e.g. a,d (the verdicts need all of them)",
    )
    parser.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only:
        ONLY.update(case.strip() for case in args.only.split(","))
    if args.echo_server:
        run_echo(args.echo_server)
        return 0
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        print("needs wrk and taskset: `apt-get install wrk util-linux` (make bench does)")
        return 2
    import logging

    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="mlstack-bench-serving-"))
    processes: list[subprocess.Popen] = []
    try:
        print(
            "preparing: features of the full data in Feast, the model, MLServer's venv", flush=True
        )
        started = time.perf_counter()
        prepared = prepare(work)
        python = mlserver_python() if wanted("(b)") else None
        print(f"  ready in {time.perf_counter() - started:.0f}s", flush=True)
        names, rows = prepared["names"], prepared["rows"]
        scripts = work / "scripts"
        scripts.mkdir()
        one_v1 = lua_script(scripts / "v1.lua", [v1_rows(names, [row]) for row in rows])
        one_v2 = lua_script(scripts / "v2.lua", [v2_columns(names, [row], False) for row in rows])
        one_pd = lua_script(scripts / "pd.lua", [v2_columns(names, [row], True) for row in rows])
        ids = lua_script(
            scripts / "ids.lua",
            [
                json.dumps({"instances": [{"customer_id": c}]}).encode()
                for c in prepared["customers"]
            ],
        )
        batch = lua_script(scripts / "batch.lua", [v1_rows(names, rows)])
        results: list[Result] = []

        port = free_port()
        cli = [str(PROJECT / ".venv" / "bin" / "mlstack"), "--config", str(prepared["config"])]
        for item in [*prepared["overrides"], f"serving.port={port}"]:
            cli += ["--set", item]
        mlstack = start(
            [*cli, "serve"],
            work / "mlstack.log",
            f"http://127.0.0.1:{port}/v2/models/propensity/ready",
        )
        processes.append(mlstack)
        base = f"http://127.0.0.1:{port}"
        metrics = f"{base}/metrics"
        results += measure(
            "(a)  mlstack V1, 1 row",
            mlstack,
            f"{base}/v1/models/propensity:predict",
            one_v1,
            args.duration,
            metrics,
        )
        results += measure(
            "(a2) mlstack V2, 1 row",
            mlstack,
            f"{base}/v2/models/propensity/infer",
            one_v2,
            args.duration,
            metrics,
        )
        results += measure(
            "(d)  mlstack V1, customer_id (Feast)",
            mlstack,
            f"{base}/v1/models/propensity:predict",
            ids,
            args.duration,
            metrics,
        )
        results += measure(
            f"(e)  mlstack V1, {BATCH}-row batch",
            mlstack,
            f"{base}/v1/models/propensity:predict",
            batch,
            args.duration,
            metrics,
        )
        stop(mlstack)

        if wanted("(b)"):
            port = free_port()
            (prepared["mlserver_dir"] / "settings.json").write_text(
                json.dumps(
                    {
                        "http_port": port,
                        "grpc_port": free_port(),
                        "metrics_port": free_port(),
                        "host": "127.0.0.1",
                        "parallel_workers": 0,
                    }
                )
            )
            mlserver = start(
                [str(python.parent / "mlserver"), "start", str(prepared["mlserver_dir"])],
                work / "mlserver.log",
                f"http://127.0.0.1:{port}/v2/models/propensity/ready",
            )
            processes.append(mlserver)
            check_same_answer(
                f"http://127.0.0.1:{port}/v2/models/propensity/infer", names, rows, prepared
            )
            results += measure(
                "(b)  MLServer sklearn V2 (pd), 1 row",
                mlserver,
                f"http://127.0.0.1:{port}/v2/models/propensity/infer",
                one_pd,
                args.duration,
            )
            stop(mlserver)

        if wanted("(c)"):
            port = free_port()
            echo = start(
                [sys.executable, str(Path(__file__).resolve()), "--echo-server", str(port)],
                work / "echo.log",
                f"http://127.0.0.1:{port}/",
            )
            processes.append(echo)
            results += measure(
                "(c)  bare ASGI JSON echo, 1 row",
                echo,
                f"http://127.0.0.1:{port}/",
                one_v1,
                args.duration,
            )
            stop(echo)

        predict_ms = model_predict_ms(prepared)
        print()
        print(table(results))
        print()
        if not ONLY:
            for line in verdicts(results, predict_ms):
                print(line)
        print("inside mlstack's server at concurrency 1 (mean ms, from its /metrics):")
        for key, value in SERVER_SIDE.items():
            print(f"  {key}: {value:.3f}")
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "results": [asdict(r) for r in results],
                        "model_predict_ms": predict_ms,
                        "server_side_ms": SERVER_SIDE,
                    },
                    indent=2,
                )
            )
        return 0
    finally:
        for process in processes:
            stop(process)
        shutil.rmtree(work, ignore_errors=True)


def check_same_answer(
    url: str, names: list[str], rows: list[list[float | None]], prepared: dict
) -> None:
    """MLServer must return the probabilities our model gives, else the comparison is void."""
    import httpx
    import numpy as np

    response = httpx.post(url, content=v2_columns(names, rows[:5], True), timeout=30)
    response.raise_for_status()
    (output,) = response.json()["outputs"]
    theirs = np.asarray(output["data"], dtype=float).reshape(5, 2)[:, 1]
    import pandas as pd

    ours = prepared["model"].predict_proba(pd.DataFrame(prepared["matrix"][:5], columns=names))[
        :, 1
    ]
    if not np.allclose(theirs, ours, rtol=0, atol=1e-12):
        raise RuntimeError(f"MLServer answers {theirs}, the model {ours}: not the same model")


if __name__ == "__main__":
    sys.exit(main())
