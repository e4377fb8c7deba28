"""Panel quality: k distinct consultations (reposts left out, the next candidates filling the
slots) and filters inside candidate search (doctor, ask-date range, source, department), in the
Python API, the CLI and the HTTP API."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from index import BuildConfig, build_index, generations
from index.consultation import Consultation, normalize_space
from index.filter_columns import FILTERS
from index.manifest import Manifest
from search import Searcher
from search.cli import main
from search.filters import FilterError
from search.server import create_app

PARTS = ["knee", "shoulder", "lower back", "neck", "wrist", "ankle", "hip", "elbow", "jaw", "heel"]
HOW = ["after running", "when I wake up", "after lifting boxes", "while typing", "in cold weather",
       "after a fall", "during pregnancy", "after football", "at night", "when I climb stairs"]
DEPARTMENTS = ["Orthopedics", "Rheumatology", "Sports Medicine"]


def corpus() -> list[Consultation]:
    """300 consultations; the 3 of "Dr. Rare" (1%) are the only ones asked in 2009 and come from rare.jsonl."""
    out = []
    for n, (part, how, extra) in enumerate(itertools.product(PARTS, HOW, ["sharp pain", "dull ache", "swelling"])):
        rare = n % 100 == 7
        out.append(Consultation(
            id=f"c{n:03d}", title=f"{part.title()} {extra}", question=f"I have a {extra} in my {part} {how}. What should I do?",
            doctor="Rare Doctor" if rare else f"Doctor {n % 7}", department=DEPARTMENTS[n % 3],
            ask_date="2009/03/0%d" % (1 + n // 100) if rare else f"2015/{1 + n % 12:02d}/15",
            reply=f"A {extra} in the {part} {how} is often strain; rest, ice and see a doctor if it lasts.",
            source=f"/data/{'rare' if rare else 'main'}.jsonl:{n + 1}"))
    return out


def reposts(consultations: list[Consultation]) -> list[Consultation]:
    """Each of the first 20 posted again under another id with another reply, the question's
    case and spacing changed (the same question after normalisation)."""
    return [replace(c, id=f"{c.id}-again", question="  " + c.question.upper().replace(" ", "  "), reply="Another doctor's reply.")
            for c in consultations[:20]]


@pytest.fixture(scope="module")
def index(tmp_path_factory, encoder) -> Path:
    directory = tmp_path_factory.mktemp("panels") / "index"
    consultations = corpus()
    build_index(consultations + reposts(consultations), directory, BuildConfig(progress=False), encoder=encoder)
    return directory


@pytest.fixture(scope="module")
def searcher(index) -> Searcher:
    return Searcher.open(index)


def distinct_questions(searcher: Searcher, hits) -> bool:
    questions = [normalize_space(searcher.get(h.id).question).lower() for h in hits]
    return len(set(questions)) == len(questions)


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
def test_a_panel_holds_k_distinct_consultations(searcher, mode):
    text = "sharp pain in my knee after running"
    hits = searcher.search(text, k=10, mode=mode)
    assert len(hits) == 10 and distinct_questions(searcher, hits)
    ids = {h.id for h in hits}
    assert not any(f"{i}-again" in ids for i in ids)  # a consultation or its repost, never both
    for panel in (searcher.similar("c000", k=8), searcher.similar_many(["c000"], k=8)[0]):
        assert len(panel) == 8 and distinct_questions(searcher, panel) and "c000-again" not in {h.id for h in panel}
    batch = searcher.search_many([text], k=10, mode=mode)[0]
    assert [h.id for h in batch] == [h.id for h in hits]


def test_picking_distinct_rows_in_chunks_picks_as_one_pass_over_every_row(searcher, monkeypatch):
    """Searcher._pick reads the ranked rows' duplicate keys a chunk at a time: whatever the chunk
    boundaries, it picks what one pass over every row picks. A row is left out when a row picked
    before it has its question hash (vectors apart), or a question vector DUPLICATE_COSINE close
    (hashes apart), in its chunk or an earlier one."""
    from index.vectors import inner_products
    from search.shard import DUPLICATE_COSINE

    rng = np.random.default_rng(2)
    n, dimension = 200, searcher.manifest.dimension
    vectors = rng.standard_normal((n, dimension)).astype(np.float32)
    hashes = np.arange(n, dtype=np.int64)
    # rows 0-19 distinct; 20-169 rewordings of them (a nearby vector, another hash); 170-184
    # reposts of them (the same hash, another vector); 185-199 distinct: picks run over chunks
    sources = rng.integers(0, 20, n)
    vectors[20:170] = vectors[sources[20:170]] + 0.003 * rng.standard_normal((150, dimension)).astype(np.float32)
    hashes[170:185] = hashes[sources[170:185]]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    monkeypatch.setattr(searcher, "_question_keys", lambda rows: (hashes[rows], vectors[rows]))
    for order in (np.arange(n), np.r_[np.arange(20), rng.permutation(np.arange(20, n))], rng.permutation(n)):
        for k in (1, 4, 10, 25, 40):
            expected: list[int] = []
            for at in range(n):
                near = [inner_products(vectors[[order[p]]], vectors[order[at]])[0] >= DUPLICATE_COSINE for p in expected]
                if hashes[order[at]] not in {hashes[order[p]] for p in expected} and not any(near):
                    expected.append(at)
                if len(expected) == k:
                    break
            assert searcher._pick(order, k, True) == expected


def test_filters_fill_the_panel_from_a_one_percent_slice(searcher):
    for hits in (searcher.search("pain in my knee", k=3, doctor="Dr. Rare Doctor"),
                 searcher.search("pain in my knee", k=3, since="2009-01-01", until="2009-12-31"),
                 searcher.search("pain in my knee", k=3, source="rare.jsonl"),
                 searcher.search("pain in my knee", k=3, source="/data/rare.jsonl", mode="dense"),
                 searcher.similar("c000", k=3, doctor="rare  doctor")):
        assert sorted(h.id for h in hits) == ["c007", "c107", "c207"]
    assert sorted(h.id for h in searcher.search("ankle", k=10, doctor="Rare Doctor", since="2009-03-02")) == ["c107", "c207"]
    orthopedics = searcher.search("swelling in my wrist", k=10, department="orthopedics")
    assert len(orthopedics) == 10 and {h.department for h in orthopedics} == {"Orthopedics"}


def test_an_index_written_before_the_filter_columns_filters_alike(searcher, index, tmp_path):
    """A generation without filters/ (written before they were saved) has them encoded from its store."""
    copy = tmp_path / "older"
    shutil.copytree(index, copy)
    generation = generations.current(copy)
    shutil.rmtree(generation / FILTERS)
    Manifest.read(generation).write(generation)
    older = Searcher.open(copy, verify=True)
    assert not isinstance(older.shards[0].filters.codes, np.memmap)
    for filters in ({"doctor": "Dr. Rare Doctor"}, {"since": "2009-01-01", "until": "2009-12-31"}, {"source": "rare.jsonl"},
                    {"department": "orthopedics"}, {"doctor": "Nobody"}):
        assert [h.id for h in older.search("pain in my knee", k=10, **filters)] == \
            [h.id for h in searcher.search("pain in my knee", k=10, **filters)]


def test_a_filter_matching_nothing_is_an_empty_panel(searcher, index, capsys):
    assert searcher.search("knee pain", doctor="Nobody") == []
    assert searcher.similar("c000", since="2030-01-01") == []
    assert searcher.search("knee pain", until="2000-01-01", mode="bm25") == []
    client = TestClient(create_app(searcher))
    response = client.get("/api/search", params={"q": "knee pain", "source": "other.jsonl"})
    assert response.status_code == 200 and response.json()["hits"] == []
    assert main(["search", "knee pain", "--index", str(index), "--doctor", "Nobody"]) == 0
    assert "no matching consultations" in capsys.readouterr().out


def test_filters_on_the_cli_and_http(searcher, index, capsys):
    assert main(["search", "pain in my knee", "--index", str(index), "-k", "3", "--since", "2009-01-01", "--until", "2009-12-31",
                 "--format", "json"]) == 0
    assert "c007" in capsys.readouterr().out
    client = TestClient(create_app(searcher))
    got = client.get("/api/search", params={"q": "pain in my knee", "k": 3, "doctor": "Rare Doctor"}).json()["hits"]
    assert sorted(h["id"] for h in got) == ["c007", "c107", "c207"]
    similar = client.get("/api/similar/c000", params={"k": 3, "since": "2009-01-01", "until": "2009-12-31"}).json()["hits"]
    assert sorted(h["id"] for h in similar) == ["c007", "c107", "c207"]
    batch = client.post("/api/search", json={"queries": ["pain in my knee"], "k": 3, "source": "rare.jsonl"}).json()["results"]
    assert sorted(h["id"] for h in batch[0]) == ["c007", "c107", "c207"]


@pytest.mark.parametrize("option, value", [("--since", "2015/07/29"), ("--until", "2015-02-30"), ("--since", "yesterday")])
def test_malformed_filters_are_refused_naming_the_parameter(searcher, index, capsys, option, value):
    with pytest.raises(SystemExit) as raised:
        main(["search", "knee", "--index", str(index), option, value])
    assert raised.value.code == 2 and option in capsys.readouterr().err
    client = TestClient(create_app(searcher))
    name = option.removeprefix("--")
    for response in (client.get("/api/search", params={"q": "knee", name: value}),
                     client.get("/api/similar/c000", params={name: value}),
                     client.post("/api/search", json={"queries": ["knee"], name: value})):
        assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == name
    with pytest.raises(FilterError, match=name):
        searcher.search("knee", **{name: value})


def test_unknown_parameters_and_fields_are_refused(searcher):
    client = TestClient(create_app(searcher))
    response = client.get("/api/search", params={"q": "knee", "departmnet": "Orthopedics"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "departmnet"]
    assert client.get("/api/similar/c000", params={"doctr": "x"}).status_code == 422
    response = client.post("/api/search", json={"queries": ["knee"], "doctr": "x"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "doctr"]


def test_evaluations_can_keep_the_copies(searcher):
    """distinct=False (the harness's default-unfolded run) ranks every copy as fusion scored it."""
    kept = searcher.search("sharp pain in my knee after running", k=10, mode="dense", distinct=False)
    folded = searcher.search("sharp pain in my knee after running", k=10, mode="dense")
    assert {"c000", "c000-again"} <= {h.id for h in kept} and not distinct_questions(searcher, kept)
    assert [h.id for h in folded] == [h.id for h in kept if h.id in {f.id for f in folded}] + \
        [h.id for h in folded if h.id not in {k.id for k in kept}]
