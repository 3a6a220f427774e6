"""The model service's speed: ``/predict`` (online features + LightGBM) in-process and over HTTP
from a real ``bentoml serve``, at concurrency 1, 8 and 32, with one and two server processes, with
the SQLite and the Redis online store, beside Feast's own ``feast serve`` HTTP lookup of the same
feature service (features only, no model) with as many processes, all measured in the same run.
The load comes from threads of this process on the same two cores as the servers, as a client on
the same PC would."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pyarrow.parquet as pq
import yaml

from bench.common import publish
from feature_repo import store as S
from feature_repo.build import build
from feature_repo.definitions import SERVICE
from market.events.table import write_events
from market.synthetic.generator import generate
from serving.decisions import DecisionService
from serving.schemas import DecisionKey
from vicap.serve_cmd import ServiceProcess, serve_environment
from vicap.settings import DataPaths, get_settings

BROKERAGE = 0.00015
MODEL_NAME = "vicap-bench-lightgbm"
REDIS_DB = 15  # a database of its own, emptied after: never the production store's keys
CONCURRENCY = (1, 8, 32)
FEAST_PATH = "feast serve /get-online-features (no model)"
WORKERS = (1, 2)  # server processes (bentoml serve and feast serve alike)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 99) * 1e3)


def load(url: str, bodies: list[dict], concurrency: int, requests: int) -> dict:
    """``requests`` POSTs of ``bodies`` (in turn) from ``concurrency`` threads, each its own
    keep-alive connection; latency per request, seen by the client."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    per_thread = requests // concurrency

    def worker(offset: int) -> None:
        mine = []
        with httpx.Client(timeout=30) as client:
            client.post(url, json=bodies[offset % len(bodies)])  # connect outside the clock
            for i in range(per_thread):
                t = time.perf_counter()
                try:
                    ok = client.post(url, json=bodies[(offset + i) % len(bodies)]).status_code == 200
                except httpx.TransportError:
                    ok = False
                mine.append(time.perf_counter() - t)
                if not ok:
                    with lock:
                        failures[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k * 7,)) for k in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    p50, p99 = _percentiles(latencies)
    return {"p50 ms": p50, "p99 ms": p99, "requests/s": len(latencies) / wall, "errors": failures[0]}


def _feast_yaml(work: Path, paths: DataPaths, online: dict) -> Path:
    repo = work / f"feast-serve-{online['type']}"
    repo.mkdir(parents=True, exist_ok=True)
    config = {
        "project": "vicap",
        "provider": "local",
        "registry": {"path": str(S.registry_path(paths.feast)), "cache_ttl_seconds": 60},
        "offline_store": {"type": "duckdb"},
        "online_store": online,
        "entity_key_serialization_version": 3,
    }
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return repo


def feast_serve(repo: Path, port: int, workers: int, log: Path) -> subprocess.Popen:
    feast = str(Path(sys.executable).with_name("feast"))
    command = [
        feast,
        "-c",
        str(repo),
        "serve",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "--no-access-log",
        "--workers",
        str(workers),
        "--max-requests",
        "100000000",
    ]  # its default (1,000) restarts the worker mid-run
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/health"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.3)
    process.terminate()
    raise TimeoutError(f"feast serve did not start; its log: {log}")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def _prepare(work: Path, stocks: int, days: int) -> tuple[DataPaths, list[dict], str]:
    """A hot synthetic market's features, applied and materialized (SQLite and Redis), and a
    LightGBM trained on them and registered; the decision keys and the model tag."""
    from training.dataset import load_dataset
    from training.models import LightGBM
    from training.registry import save

    root = work / "raw"
    generate(root, stocks, days, 29, dt.date(2024, 3, 4), "hot", 2)
    paths = DataPaths(work / "data")
    write_events(root, paths.events.parent)
    build(root, paths.events, paths.features, paths.labels, work / "reports", BROKERAGE, validate=False)
    fs = S.open_store(paths.feast)
    S.apply(fs, paths.features)
    start, end = dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2024, 12, 31, tzinfo=dt.UTC)
    S.materialize(fs, start, end)
    ds = load_dataset(fs, paths.labels, SERVICE)
    model = LightGBM(rounds=100).fit(ds.on_days(ds.days[:-1]), ds.on_days(ds.days[-1:]))
    tag = save(model, {"feature_service": SERVICE, "channels": [], "data_from": str(ds.days[0])}, MODEL_NAME)
    if _redis_up():
        S.materialize(S.open_store(paths.feast, _redis_url()), start, end)
    rows = pq.read_table(
        paths.features / "vi_decision_features.parquet", columns=["event_id", "decision_offset_s"]
    )
    keys = [
        {"event_id": e, "decision_offset": int(k)} for e, k in zip(*rows.to_pydict().values(), strict=True)
    ]
    return paths, keys, tag


def _redis_url() -> str:
    return urlparse(get_settings().redis_url)._replace(path=f"/{REDIS_DB}").geturl()


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(_redis_url(), socket_connect_timeout=2).ping())
    except redis.exceptions.ConnectionError as exc:
        print(f"no Redis figures: {exc}")
        return False


def main(stocks: int = 8, days: int = 3, requests: int = 1600) -> dict:
    import bentoml
    import redis

    warnings.filterwarnings("ignore", message=".*fetch_arrow_table.*")
    work = Path(tempfile.mkdtemp(prefix="vicap-bench-serving-"))
    rows: list[dict] = []
    tag = None
    try:
        paths, keys, tag = _prepare(work, stocks, days)
        bodies = keys[:: max(1, len(keys) // 400)]
        entities = [S.decision_entity(k["event_id"], k["decision_offset"], k["event_id"][:6]) for k in bodies]
        feast_bodies = [
            {"feature_service": SERVICE, "entities": {name: [value] for name, value in e.items()}}
            for e in entities
        ]
        stores = {"sqlite": "sqlite", **({"redis": _redis_url()} if _redis_up() else {})}
        for label, online in stores.items():
            decisions = DecisionService(paths.feast, online, tag)
            lat = []
            for i in range(2_000):
                t = time.perf_counter()
                decisions.predict(DecisionKey(**bodies[i % len(bodies)]))
                lat.append(time.perf_counter() - t)
            p50, p99 = _percentiles(lat)
            rows.append({"online store": label, "path": "/predict in-process (DecisionService)", "workers": 1,
                         "concurrency": 1, "p50 ms": p50, "p99 ms": p99, "requests/s": len(lat) / sum(lat),
                         "errors": 0})  # fmt: skip
            kind = (
                {"type": "sqlite", "path": str(paths.feast / "online.db")}
                if label == "sqlite"
                else {"type": "redis", "connection_string": f"{urlparse(online).netloc},db={REDIS_DB}"}
            )
            repo = _feast_yaml(work, paths, kind)
            for workers in WORKERS:
                env = serve_environment(get_settings(), tag, "", paths.root)
                env |= {"VICAP_ONLINE_STORE": online, "VICAP_SERVE_WORKERS": str(workers)}
                log = work / f"serve-{label}-{workers}.log"
                with ServiceProcess(env, port=_free_port(), log=log) as svc:
                    for c in CONCURRENCY:
                        r = load(svc.url + "/predict", bodies, c, requests if c > 1 else requests // 2)
                        rows.append({"online store": label, "path": "/predict over HTTP (bentoml serve)",
                                     "workers": workers, "concurrency": c, **r})  # fmt: skip
                port = _free_port()
                process = feast_serve(repo, port, workers, work / f"feast-{label}-{workers}.log")
                try:
                    url = f"http://127.0.0.1:{port}/get-online-features"
                    for c in CONCURRENCY:  # fewer requests: it serves about a third as many a second
                        r = load(url, feast_bodies, c, requests // 2 if c > 1 else requests // 4)
                        rows.append({"online store": label, "path": FEAST_PATH, "workers": workers,
                                     "concurrency": c, **r})  # fmt: skip
                finally:
                    _stop(process)
        publish(
            "serving",
            f"/predict ({SERVICE}, LightGBM) beside feast serve ({os.cpu_count()} cores)",
            rows,
            {"target": "HTTP p99 < 10 ms at concurrency 8, model included"},
        )
        return {"rows": rows}
    finally:
        if tag:
            bentoml.models.delete(tag)
        if _redis_up():
            redis.Redis.from_url(_redis_url()).flushdb()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
