"""`simqa serve --ray` (search/served.py) on a local Ray runtime of 2 CPUs, a 2-shard index: every
endpoint answers as the single-process server does, replicas follow `simqa add`, and a shard whose
replica is killed gives 503s, never a wrong panel, until Ray Serve has replaced it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from benchmarks.liveqa import QRELS
from benchmarks.medquad import load_medquad
from index import BuildConfig, build_index
from search import Searcher
from search.server import create_app
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(not QRELS.is_file(), reason="../shared/datasets is not beside the project")
ray = pytest.importorskip("ray", reason="the ray extra is not installed")
serve = pytest.importorskip("ray.serve", reason="the ray extra is not installed")

QUERIES = ["what causes headaches and nausea", "genetic testing for children", "treatment of high blood pressure",
           "is this rash contagious", "symptoms of thyroid cancer"]
RESUME_SECONDS = 60  # after a replica is killed, complete answers are back within this (Ray Serve restarts it)
CACHE = Path(tempfile.mkdtemp(prefix="simqa-served-")) / "embeddings.sqlite"


@pytest.fixture(scope="module")
def corpus():
    consultations = load_medquad()[::300]
    return consultations + [replace(consultations[0], id="repost-of-first")]


@pytest.fixture(scope="module")
def index(tmp_path_factory, corpus) -> Path:
    directory = tmp_path_factory.mktemp("served") / "index"
    build_index(corpus, directory, BuildConfig(progress=False, max_passages=2, vector_index="flat", precision="fp32", shards=2,
                                               cache=CACHE))
    return directory


@pytest.fixture(scope="module")
def served(index):
    """The base URL of the index served on Ray Serve (2 shard deployments, one replica each)."""
    from search.served import start

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    port = _free_port()
    try:
        start(index, "local", port=port)
    except ray.exceptions.RayActorError:  # Serve gives its HTTP proxy 60 s to start, which a loaded machine can miss
        serve.shutdown()
        start(index, "local", port=port)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    yield base
    serve.shutdown()
    ray.shutdown()


def local(index: Path) -> TestClient:
    return TestClient(create_app(Searcher.open(index)))


def requests_of(corpus) -> list[tuple[str, str, dict]]:
    """(method, path, parameters or body) of every endpoint, answers and refusals alike."""
    some = corpus[7].id
    out = [("GET", "/api/search", {"q": q, "mode": mode}) for q in QUERIES for mode in ("hybrid", "bm25", "dense")]
    out += [("GET", "/api/search", {"q": QUERIES[0], "k": 3, "explain": "true"}),
            ("GET", "/api/search", {"q": QUERIES[1], "department": corpus[3].department}),
            ("POST", "/api/search", {"queries": QUERIES, "k": 5}),
            ("GET", f"/api/similar/{corpus[0].id}", {"k": 10}),
            ("GET", f"/api/similar/{some}", {"k": 4, "explain": "true"}),
            ("GET", "/api/related-faq", {"q": QUERIES[2]}),
            ("GET", "/api/related-faq", {"id": some}),
            ("GET", f"/api/consultations/{some}", {}),
            ("GET", "/api/similar/no-such-id", {}),
            ("GET", "/api/consultations/no-such-id", {}),
            ("GET", "/api/search", {"q": "knee", "bogus": "1"}),
            ("GET", "/api/search", {"q": "   "}),
            ("GET", "/openapi.json", {}), ("GET", "/", {}), ("GET", "/widget.js", {})]
    return out


def send(client, method: str, path: str, data: dict):
    return client.post(path, json=data) if method == "POST" else client.get(path, params=data)


def test_every_endpoint_answers_as_the_single_process_server(served, index, corpus):
    here = local(index)
    with httpx.Client(base_url=served, timeout=30) as there:
        for method, path, data in requests_of(corpus):
            expected, got = send(here, method, path, data), send(there, method, path, data)
            assert got.status_code == expected.status_code, (path, data, got.text)
            assert got.content == expected.content, (path, data)
        health = there.get("/healthz").json()
    assert health["status"] == "ok" and health["consultations"] == len(corpus)
    assert [(s["shard"], s["replicas"], s["consultations"]) for s in health["shards"]] == \
        [(s["shard"], 1, s["consultations"]) for s in here.get("/healthz").json()["shards"]]
    assert sum(s["consultations"] for s in health["shards"]) == len(corpus)


def test_replicas_follow_an_added_consultation_without_a_failed_request(served, index, tmp_path):
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "rash", "title": "Itchy rash on arms", "question": "I have an itchy red rash on both arms "
                                 "since I started a new soap. Is it an allergy?", "reply": "It sounds like contact dermatitis."}) + "\n")
    before = httpx.get(served + "/healthz").json()
    failures, answered, stop = [], [0], threading.Event()

    def load() -> None:
        with httpx.Client(base_url=served, timeout=30) as client:
            while not stop.is_set():
                response = client.get("/api/search", params={"q": QUERIES[answered[0] % len(QUERIES)], "k": 5})
                if response.status_code != 200:
                    failures.append((response.status_code, response.text))
                answered[0] += 1

    thread = threading.Thread(target=load)
    thread.start()
    try:
        subprocess.run([sys.executable, "-m", "search.cli", "add", str(extra), "--index", str(index), "--quiet"], cwd=ROOT,
                       check=True, capture_output=True)
        deadline = time.time() + 30
        while httpx.get(served + "/healthz").json()["generation"] == before["generation"] and time.time() < deadline:
            time.sleep(0.2)
        found = httpx.get(served + "/api/consultations/rash")
        hits = httpx.get(served + "/api/search", params={"q": "itchy rash on my arms after a new soap"}).json()["hits"]
    finally:
        stop.set()
        thread.join()
    after = httpx.get(served + "/healthz").json()
    assert failures == [] and answered[0] > 5
    assert found.status_code == 200 and hits[0]["id"] == "rash"
    assert after["consultations"] == before["consultations"] + 1
    assert {s["generation"] for s in after["shards"]} != {s["generation"] for s in before["shards"]}
    expected = local(index).get("/api/search", params={"q": QUERIES[0]}).content
    assert httpx.get(served + "/api/search", params={"q": QUERIES[0]}).content == expected


def test_a_killed_shard_replica_gives_503s_not_wrong_panels_until_it_is_back(served, index):
    here = local(index)
    expected = {q: [h["id"] for h in here.get("/api/search", params={"q": q}).json()["hits"]] for q in QUERIES}
    pid = _replica_pid("shard-00")
    counts = {"complete": 0, "503": 0, "wrong": 0}
    last_incomplete, killed_at = None, time.time()
    os.kill(pid, signal.SIGKILL)
    with httpx.Client(base_url=served, timeout=30) as client:
        for turn in range(100_000):
            query = QUERIES[turn % len(QUERIES)]
            response = client.get("/api/search", params={"q": query})
            if response.status_code == 200 and [h["id"] for h in response.json()["hits"]] == expected[query]:
                counts["complete"] += 1
            elif response.status_code == 503 and response.json()["shard"] == "shard-00":
                counts["503"] += 1
                last_incomplete = time.time()
            else:
                counts["wrong"] += 1
            now = time.time()
            if now - killed_at > RESUME_SECONDS or (now - (last_incomplete or killed_at) > 5 and now - killed_at > 5):
                break
    resumed = (last_incomplete or killed_at) - killed_at
    print(f"after the kill: {counts}, complete answers again {resumed:.1f} s after it")
    assert counts["wrong"] == 0
    assert resumed < RESUME_SECONDS and counts["complete"] > 0
    assert _replica_pid("shard-00") != pid  # Ray Serve replaced it
    assert httpx.get(served + "/healthz").json()["status"] == "ok"


def _replica_pid(deployment: str) -> int:
    """The pid of the running replica of a deployment, from Ray's actor table (the GCS's: the
    state API of ray.util.state needs the dashboard, which these tests do not start)."""
    from ray._private.state import actors

    deadline = time.time() + 60
    while time.time() < deadline:
        alive = [a for a in actors().values() if a["State"] == "ALIVE" and a["ActorClassName"].endswith(f":{deployment}")]
        if alive and alive[0]["Pid"]:
            return alive[0]["Pid"]
        time.sleep(0.5)
    raise AssertionError(f"no running replica of {deployment}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
