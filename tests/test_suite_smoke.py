"""The benchmark suite's question-to-question benchmarks: how they are built, and a smoke run of
the fusion fit on RQE pairs over a small corpus."""

import numpy as np
import pytest

from benchmarks.fit_fusion import Pools, margin
from benchmarks.prf import Feedback
from benchmarks.rqe import RQE, key, load_rqe, negatives_above
from index import BuildConfig, build_index
from index.consultation import Consultation
from search import MODES, Fusion, Searcher
from search.bench import evaluate
from search.fusion import SIGNALS

pytestmark = pytest.mark.skipif(not RQE.is_file(), reason="../shared/datasets is not beside the project")


@pytest.fixture(scope="module")
def rqe():
    return load_rqe()


def test_rqe_queries_have_a_reworded_short_form(rqe):
    queries, shorts, counts = rqe
    assert counts["pairs"] == 8588 and counts["queries"] == len(queries) > 3000
    assert len(set(shorts.values())) == len(shorts) == counts["short_questions"]
    for query in queries:
        assert query.relevant and all(key(shorts[d]) != key(query.text) for d in query.relevant)
        assert not query.relevant & query.negatives


def test_negatives_above_counts_pairs_ranked_over_the_true_short_form():
    run = {"q1": [("neg", 3.0), ("true", 2.0)], "q2": [("true", 1.0)]}
    qrels = {"q1": {"true": 1}, "q2": {"true": 1}}
    assert negatives_above(run, {"q1": ["neg", "other"], "q2": ["neg"]}, qrels) == pytest.approx(1 / 3)


def test_fit_on_a_small_rqe_slice(rqe, tmp_path, encoder):
    """Pools gathered once score every fusion as search() itself would rank."""
    queries, shorts, _ = rqe
    sample = queries[:40]
    docs = {d for q in sample for d in q.relevant | q.negatives}
    corpus = [Consultation(id=d, question=shorts[d]) for d in sorted(docs)]
    build_index(corpus, tmp_path / "index", BuildConfig(progress=False), encoder=encoder)
    searcher = Searcher.open(tmp_path / "index", encoder=encoder)
    texts = {q.qid: q.text for q in sample}
    qrels = {q.qid: {d: 1 for d in q.relevant} for q in sample}
    pools = Pools.gather(searcher, texts, panel=False)
    pools.save(tmp_path / "pools")
    pools = Pools.load(tmp_path / "pools")
    assert not pools.has_replies
    for fusion in (MODES["hybrid"], MODES["dense"], Fusion(weights={"bm25_question": 1.0, "dense_question": 1.0}, method="rrf")):
        offline = pools.run(fusion)
        online = {q: [(h.id, h.score) for h in searcher.search(t, k=100, fusion=fusion)] for q, t in texts.items()}
        assert {q: [d for d, _ in r[:10]] for q, r in offline.items()} == {q: [d for d, _ in r[:10]] for q, r in online.items()}
    fusions = {"default": MODES["hybrid"], **{s: Fusion(weights={s: 1.0}) for s in SIGNALS}}
    figures = {name: {"rqe": evaluate(pools.run(f), qrels, 1)} for name, f in fusions.items()}
    assert figures["default"]["rqe"]["MRR@10"] > 0.9
    # benchmarks/prf.py rescores the same candidates from the index's vectors: with no weight on
    # the feedback it ranks as the pools do, and its feedback moves the query vector
    feedback = Feedback(pools, searcher, texts, panel=False)
    assert feedback.run(None, 0.0) == pools.run(MODES["hybrid"])
    assert {q: [d for d, _ in r[:10]] for q, r in feedback.run(3, 0.0).items()} == {q: [d for d, _ in r[:10]] for q, r in pools.run(MODES["hybrid"]).items()}
    assert feedback.run(3, 1.0) != feedback.run(None, 0.0)
    assert margin(figures, "default", "rqe") >= 0  # no signal alone is ahead of the default


def test_a_learned_fusion_fit_on_some_queries_ranks_others_by_the_signal_that_tells():
    """benchmarks/learned_fusion.py: a logistic regression over the per-signal features, fit on
    one set of queries, ranks another set's relevant candidate first when one signal tells it
    (here the cosine) and the other (BM25) is noise."""
    from benchmarks.learned_fusion import Examples, fit

    rng = np.random.default_rng(7)

    def pools(prefix: str, n: int) -> tuple[Pools, dict]:
        qids, ids, scores, qrels = [], [], [], {}
        for q in range(n):
            qid = f"{prefix}{q}"
            cosines = rng.uniform(0.2, 0.6, 30)
            cosines[q % 30] = 0.8  # the relevant one
            qids.append(qid)
            ids.append([f"{qid}-{d}" for d in range(30)])
            scores.append({"bm25": rng.uniform(1, 20, 30), "bm25_question": rng.uniform(1, 20, 30),
                           "dense_question": cosines, "dense_reply": np.full(30, np.nan)})
            qrels[qid] = {f"{qid}-{q % 30}": 1}
        return Pools(qids, ids, scores), qrels

    train, train_qrels = pools("a", 40)
    held, held_qrels = pools("b", 20)
    model, scaler = fit([Examples(train, train_qrels, 1)], c=1.0)
    run = Examples(held, held_qrels, 1).run(model, scaler)
    assert evaluate(run, held_qrels, 1)["MRR@10"] == pytest.approx(1.0)
