"""`simqa adapt`: fine-tune the encoder on a site's own consultations, no labels needed.

Every consultation is a labelled pair already: a patient's question and the doctor's reply. Two
kinds of pairs are taken, each matching one dense signal of the index:

- question -> reply passage (`dense_reply`): the asker's own words (the question body, as a
  query arrives: no title, no annotations) against the first passages of the reply, embedded as
  the index embeds them (index/passages.py).
- title -> question (`dense_question`): a title written for a question against the question as
  the index embeds it (`Consultation.question_text`); only where the title is not a part of the
  question body already (there the pair would teach word overlap, which BM25 has).

The model trains with sentence-transformers' own trainer on MultipleNegativesRankingLoss: each
pair's positive against the other pairs' positives in the batch (in-batch negatives; batches
never hold the same anchor twice, as MedQuAD repeats templated questions). With
`hard_negatives`, each pair also carries the positive of another consultation that simqa's BM25
ranks highest for its anchor (`with_hard_negatives`): a reply that shares the question's words
but answers something else, which random batches seldom hold. Off by default: on MedQuAD those
are mostly the same disease's replies to its other questions, and the model trained on them
ranked LiveQA-Med's answers worse (benchmarks/results/adapt/run5-hard-negatives). A validation split of
the corpus's own consultations (chosen by a hash of the id, never trained on) is scored before
and while training (MRR@10 of each anchor's positive among the split's positives); training keeps
the best checkpoint, stops when validation stops improving, and within `max_minutes`. The
published weights are the fine-tuned ones blended with the base's (`blend`, half of each by
default): on MedQuAD, the fine-tuned model alone matched consumers' questions to replies better
but reworded questions to each other worse (benchmarks/results/adapt/).

The output is a normal sentence-transformers model directory (`simqa index --model DIR`), with
a model card beside the weights: `adapt.json`, `ADAPT.md`, `loss.png`. It is written in a
temporary directory beside the target and renamed into place when complete, so a killed run
leaves no model directory behind. Needs the adapt extra: `pip install 'simqa[adapt]'`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm
from transformers import EarlyStoppingCallback, TrainerCallback, set_seed

from index.bm25 import FieldBM25
from index.consultation import Consultation
from index.embed import model_fingerprint, native_bf16, resolve_model
from index.errors import SimqaError
from index.passages import MAX_PASSAGES, PASSAGE_WORDS, passages
from index.text import tokenize

CARD = "adapt.json"
MIN_PAIRS = 200  # fewer training pairs than this cannot move a model without overfitting it
VALIDATION_SHARE = 0.05  # of the consultations, held out: at least MIN_VALIDATION, at most MAX_VALIDATION
MIN_VALIDATION, MAX_VALIDATION = 20, 1000
REPLY_PASSAGES = 2  # passages of a reply paired with its question: the reply's start carries its subject
EVALUATIONS = 6  # validation runs over the planned steps (early stopping looks at these)
BASE_WEIGHT = 0.5  # share of the base model's weights in the published one (WiSE-FT's untuned default; see blend)
PATIENCE = 2  # evaluations without improvement before stopping
NEGATIVE_DEPTH = 20  # BM25's best positives searched for an anchor's hard negatives


@dataclass
class Pair:
    kind: str  # "question->reply" or "title->question"
    anchor: str
    positive: str
    consultation: str  # id
    negative: str = ""  # with_hard_negatives: another consultation's positive that BM25 ranks high for the anchor


@dataclass
class AdaptReport:
    """What the model card records."""

    base: str
    base_fingerprint: str
    corpus_sha256: str
    consultations: int
    pairs: dict[str, int]
    validation_consultations: int
    validation_pairs: dict[str, int]
    seed: int
    batch_size: int
    max_seq_length: int
    learning_rate: float
    base_weight: float = BASE_WEIGHT
    hard_negatives: bool = False
    steps: int = 0
    planned_steps: int = 0
    stopped: str = ""
    seconds: float = 0.0
    precision: str = "fp32"
    validation_before: dict[str, float] = field(default_factory=dict)
    validation_trained: dict[str, float] = field(default_factory=dict)  # the fine-tuned model, before the blend
    validation_after: dict[str, float] = field(default_factory=dict)  # the published model
    loss: list[tuple[int, float]] = field(default_factory=list)


def training_pairs(consultations: list[Consultation]) -> list[Pair]:
    """The pairs a corpus gives (see the module's docstring), in corpus order."""
    out = []
    for c in consultations:
        body = c.question.strip()
        if body:
            for passage in passages(c.reply_text(), PASSAGE_WORDS, MAX_PASSAGES)[:REPLY_PASSAGES]:
                out.append(Pair("question->reply", body, passage, c.id))
        title = c.title.strip()
        if title and _folded(title) not in _folded(body):
            out.append(Pair("title->question", title, c.question_text(), c.id))
    return out


def with_hard_negatives(pairs: list[Pair]) -> list[Pair]:
    """The pairs that BM25 finds a hard negative for, each with it: among the positives of the
    same kind, the best BM25 match of the anchor that belongs to another consultation and to none
    whose anchor is the same text (a site that repeats a question answers it in each place: those
    replies would be false negatives). An anchor's successive pairs take successive candidates."""
    out = []
    for kind in _counts(pairs):
        of_kind = [p for p in pairs if p.kind == kind]
        texts = list(dict.fromkeys(p.positive for p in of_kind))
        row = {text: n for n, text in enumerate(texts)}
        owners: list[set[str]] = [set() for _ in texts]  # the consultations and folded anchors of each positive
        for p in of_kind:
            owners[row[p.positive]] |= {p.consultation, "\0" + _folded(p.anchor)}
        bm25 = FieldBM25.build([tokenize(text) for text in texts])
        asked: dict[tuple[str, str], list[Pair]] = {}
        for p in of_kind:
            asked.setdefault((p.consultation, p.anchor), []).append(p)
        depth = min(NEGATIVE_DEPTH, len(texts))
        for (consultation, anchor), group in asked.items():
            scores = bm25.scores(tokenize(anchor))
            best = np.argpartition(-scores, depth - 1)[:depth]
            mine = {consultation, "\0" + _folded(anchor)}
            candidates = [int(r) for r in best[np.argsort(-scores[best], kind="stable")] if scores[r] > 0 and not owners[r] & mine]
            out += [replace(p, negative=texts[r]) for p, r in zip(group, candidates)]
    return out


def split(consultations: list[Consultation], seed: int) -> tuple[set[str], set[str]]:
    """(training ids, validation ids): the validation share by a seeded hash of the id, stable
    across runs and corpus order."""
    ranked = sorted(consultations, key=lambda c: hashlib.blake2b(f"{seed}\0{c.id}".encode(), digest_size=8).digest())
    size = min(MAX_VALIDATION, max(MIN_VALIDATION, int(len(ranked) * VALIDATION_SHARE)))
    validation = {c.id for c in ranked[:size]}
    return {c.id for c in consultations} - validation, validation


def blend(model, base_path: Path, base_weight: float) -> None:
    """Move a fine-tuned model's weights back toward its base's, in place: `base_weight` of the
    base plus the rest of the fine-tuned (WiSE-FT, Wortsman et al. 2022). Fine-tuning on question
    -> reply pairs alone also reshapes how questions sit beside each other; the blend keeps most of
    the in-corpus gain while giving back what the base knew of reworded questions."""
    import sentence_transformers as st
    import torch

    base = st.SentenceTransformer(str(base_path), device="cpu").state_dict()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.mul_(1 - base_weight).add_(base[name], alpha=base_weight)


def adapt(
    consultations: list[Consultation],
    out_dir: str | Path,
    base: str | None = None,
    max_minutes: float = 30.0,
    seed: int = 0,
    batch_size: int = 64,
    learning_rate: float = 5e-5,
    max_seq_length: int = 128,
    max_steps: int | None = None,
    base_weight: float = BASE_WEIGHT,
    hard_negatives: bool = False,
    progress: bool = True,
) -> AdaptReport:
    """Adapt `base` (the bundled MiniLM by default) to these consultations and write the model to
    `out_dir`: the fine-tuned weights blended with the base's (`base_weight` of the base; 0 keeps
    the fine-tuned model as it is). With `hard_negatives`, trains on the pairs BM25 mines a hard
    negative for (`with_hard_negatives`). Returns what its model card says. `max_steps` caps the
    steps (for tests)."""
    if not learning_rate > 0:
        raise SimqaError(f"--learning-rate: {learning_rate:g} is not positive")
    if batch_size < 2:
        raise SimqaError(f"--batch-size: {batch_size} is too small; in-batch negatives need 2 pairs a step at least")
    if not 0 <= base_weight < 1:
        raise SimqaError(f"--base-weight: {base_weight:g} is not in [0, 1)")
    out_dir = Path(out_dir)
    _check_target(out_dir)
    base_name, base_path = resolve_model(base)
    if not (base_path / "modules.json").is_file():
        raise SimqaError(f"--base: {base_path} is not a sentence-transformers model directory (no modules.json)")
    train_ids, validation_ids = split(consultations, seed)
    pairs = training_pairs(consultations)
    train = [p for p in pairs if p.consultation in train_ids]
    validation = [p for p in pairs if p.consultation in validation_ids]
    if hard_negatives:
        train = with_hard_negatives(train)
    if len(train) < MIN_PAIRS or not validation:
        raise SimqaError(f"too small to adapt: {len(consultations)} consultations give {len(train)} training pairs and "
                         f"{len(validation)} validation pairs; at least {MIN_PAIRS} training pairs are needed (about "
                         f"{math.ceil(MIN_PAIRS / (1 - VALIDATION_SHARE))} consultations with replies, or with titles that "
                         "are not part of their questions)")
    libraries = _libraries()
    precision = "bf16" if native_bf16() else "fp32"
    report = AdaptReport(base_name, model_fingerprint(base_path), _corpus_sha256(consultations), len(consultations),
                         _counts(train), len(validation_ids), _counts(validation), seed, batch_size, max_seq_length,
                         learning_rate, base_weight, hard_negatives, precision=precision)
    work = out_dir.parent / f".{out_dir.name}.adapting-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    _remove_stale(out_dir)
    try:
        _train(libraries, base_path, train, validation, work, report, max_minutes, max_steps, progress)
        _write_card(work, report)
        _publish(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report


def validation_scores(model, consultations: list[Consultation], seed: int) -> dict[str, float]:
    """MRR@10 of each pair kind on the validation split of `seed`, as a model card reports it: for
    judging a model made from an adapted one (a blend at another weight, say) the same way."""
    st, _ = _libraries()
    held_out = split(consultations, seed)[1]
    return _scores(_kind_evaluators(st, training_pairs([c for c in consultations if c.id in held_out])), model)


def _train(libraries, base_path: Path, train: list[Pair], validation: list[Pair], work: Path, report: AdaptReport,
           max_minutes: float, max_steps: int | None, progress: bool) -> None:
    """Fine-tune with the trainer; the best checkpoint by validation MRR@10 ends in `work`."""
    st, datasets = libraries
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    started = time.monotonic()
    set_seed(report.seed)
    model = st.SentenceTransformer(str(base_path), device="cpu")
    model.max_seq_length = min(report.max_seq_length, model.max_seq_length or report.max_seq_length)
    evaluators = _kind_evaluators(st, validation)
    combined = _evaluator(st, validation, "validation")
    report.validation_before = _scores(evaluators, model)
    columns = {"anchor": [p.anchor for p in train], "positive": [p.positive for p in train]}
    if report.hard_negatives:
        columns["negative"] = [p.negative for p in train]
    data = datasets.Dataset.from_dict(columns)
    planned = math.ceil(len(train) / report.batch_size)
    if max_steps is not None:
        planned = min(planned, max_steps)
    report.planned_steps = planned
    every = max(1, planned // EVALUATIONS)
    arguments = st.SentenceTransformerTrainingArguments(
        output_dir=str(work / "checkpoints"), num_train_epochs=1, max_steps=planned, per_device_train_batch_size=report.batch_size,
        learning_rate=report.learning_rate, warmup_steps=0.1, seed=report.seed, bf16=report.precision == "bf16", use_cpu=True,
        batch_sampler=BatchSamplers.NO_DUPLICATES, eval_strategy="steps", eval_steps=every, save_strategy="steps",
        save_steps=every, save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="eval_validation_cosine_mrr@10",
        greater_is_better=True, logging_steps=max(1, every // 4), report_to="none", disable_tqdm=True, dataloader_num_workers=0,
    )
    budget = max(0.0, max_minutes * 60 - (time.monotonic() - started))
    trainer = st.SentenceTransformerTrainer(
        model=model, args=arguments, train_dataset=data, loss=MultipleNegativesRankingLoss(model), evaluator=combined,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=PATIENCE), _Progress(planned, budget, progress, report)],
    )
    trainer.train()
    report.steps = trainer.state.global_step
    report.stopped = report.stopped or ("early: validation stopped improving" if report.steps < planned else "planned steps done")
    report.loss = [(entry["step"], round(entry["loss"], 4)) for entry in trainer.state.log_history if "loss" in entry]
    report.validation_trained = _scores(evaluators, model)
    if report.base_weight:
        blend(model, base_path, report.base_weight)
        report.validation_after = _scores(evaluators, model)
    else:
        report.validation_after = dict(report.validation_trained)
    model.save(str(work / "model"))
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    report.seconds = round(time.monotonic() - started, 1)


class _Progress(TrainerCallback):
    """A progress bar of steps with the loss and the time left; stops training when the time is up."""

    def __init__(self, steps: int, budget: float, shown: bool, report: AdaptReport) -> None:
        self.bar = tqdm(total=steps, desc="adapting", unit="step", disable=not shown)
        self.budget, self.report = budget, report
        self.start = time.monotonic()
        self.loss = float("nan")
        self.reserve = 0.0  # seconds kept for the last evaluation and the two after training (fine-tuned, blended)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.reserve = max(self.reserve, 3 * float((metrics or {}).get("eval_runtime", 0.0)))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = logs["loss"]

    def on_step_end(self, args, state, control, **kwargs):
        elapsed = time.monotonic() - self.start
        per_step = elapsed / max(1, state.global_step)
        left = min(self.budget - elapsed, per_step * (state.max_steps - state.global_step))
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{self.loss:.3f}", left=f"{max(0.0, left) / 60:.1f} min")
        if elapsed + per_step + self.reserve > self.budget:  # the next step and the evaluations would end past it
            self.report.stopped = "time: --max-minutes reached"
            control.should_training_stop = True
            control.should_evaluate = control.should_save = True  # the last state competes for best
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()


def _evaluator(st, pairs: list[Pair], name: str):
    """MRR@10 of each anchor's positives among every positive of these pairs."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    positives = {text: f"d{n}" for n, text in enumerate(dict.fromkeys(p.positive for p in pairs))}
    asked: dict[tuple[str, str], set[str]] = {}  # an anchor of a consultation: all its positives are relevant
    for pair in pairs:
        asked.setdefault((pair.consultation, pair.anchor), set()).add(positives[pair.positive])
    queries = {f"q{n}": anchor for n, (_, anchor) in enumerate(asked)}
    relevant = {f"q{n}": docs for n, docs in enumerate(asked.values())}
    corpus = {doc: text for text, doc in positives.items()}
    return InformationRetrievalEvaluator(queries, corpus, relevant, name=name, mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1],
                                         precision_recall_at_k=[10], map_at_k=[10], write_csv=False, batch_size=32)


def _kind_evaluators(st, pairs: list[Pair]) -> dict:
    """One evaluator per pair kind, as the model card reports validation."""
    return {kind: _evaluator(st, [p for p in pairs if p.kind == kind], kind) for kind in _counts(pairs)}


def _scores(evaluators: dict, model) -> dict[str, float]:
    """Each evaluator's MRR@10 of the model, rounded as the card keeps it."""
    return {kind: round(_mrr(e, model), 4) for kind, e in evaluators.items()}


def _mrr(evaluator, model) -> float:
    scores = evaluator(model)
    return float(next(v for k, v in scores.items() if k.endswith("mrr@10")))


def _check_target(out_dir: Path) -> None:
    """Refuse to write over a directory that is not an adapted model."""
    if out_dir.exists() and not (out_dir / CARD).is_file():
        if not out_dir.is_dir() or any(out_dir.iterdir()):
            raise SimqaError(f"--out: {out_dir} exists and is not a model simqa adapt wrote (no {CARD}); choose another directory")


def _remove_stale(out_dir: Path) -> None:
    """Temporary directories of killed runs beside the target."""
    for stale in out_dir.parent.glob(f".{out_dir.name}.adapting-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _publish(work: Path, out_dir: Path) -> None:
    """The finished model into place: a rename, after moving an older adapted model aside."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    old = out_dir.parent / f".{out_dir.name}.replaced-{os.getpid()}"
    if out_dir.exists():
        out_dir.rename(old)
    (work / "model").rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _write_card(work: Path, report: AdaptReport) -> None:
    """adapt.json, ADAPT.md and loss.png beside the weights."""
    model_dir = work / "model"
    (model_dir / CARD).write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    _plot_loss(report.loss, model_dir / "loss.png")
    rows = "\n".join(f"| {kind} | {report.pairs.get(kind, 0):,} | {report.validation_pairs.get(kind, 0):,} | "
                     f"{report.validation_before.get(kind, float('nan')):.4f} | {report.validation_trained.get(kind, float('nan')):.4f} | "
                     f"{report.validation_after.get(kind, float('nan')):.4f} |"
                     for kind in sorted(set(report.pairs) | set(report.validation_pairs)))
    (model_dir / "ADAPT.md").write_text(
        f"# Adapted by `simqa adapt`\n\nBase model: {report.base} (fingerprint {report.base_fingerprint}). Corpus: "
        f"{report.consultations:,} consultations (SHA-256 {report.corpus_sha256[:16]}...), {report.validation_consultations:,} "
        f"held out for validation (seed {report.seed}).\n\nTraining: MultipleNegativesRankingLoss"
        f"{' with a BM25-mined hard negative a pair' if report.hard_negatives else ''}, batch {report.batch_size}, "
        f"learning rate {report.learning_rate:g}, sequences of at most {report.max_seq_length} tokens, {report.precision}; "
        f"{report.steps} of {report.planned_steps} planned steps in {report.seconds / 60:.1f} min ({report.stopped}); "
        f"published weights: {report.base_weight:g} of the base's blended with the fine-tuned ones (WiSE-FT).\n\n"
        "| pairs | training | validation | validation MRR@10 before | fine-tuned | published |\n|---|---|---|---|---|---|\n"
        f"{rows}\n\n![training loss](loss.png)\n", encoding="utf-8")


def _plot_loss(loss: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 3.5))
    axes.plot([s for s, _ in loss], [v for _, v in loss], marker=".")
    axes.set_xlabel("step")
    axes.set_ylabel("training loss")
    axes.set_title("simqa adapt: MultipleNegativesRankingLoss")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def _counts(pairs: list[Pair]) -> dict[str, int]:
    out: dict[str, int] = {}
    for pair in pairs:
        out[pair.kind] = out.get(pair.kind, 0) + 1
    return out


def _corpus_sha256(consultations: list[Consultation]) -> str:
    digest = hashlib.sha256()
    for c in consultations:
        digest.update(json.dumps(c.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()


def _folded(text: str) -> str:
    return " ".join(text.casefold().split())


def _libraries():
    """sentence-transformers with its training dependencies, or a SimqaError that says how to install them."""
    try:
        import datasets
        import matplotlib  # noqa: F401
        import sentence_transformers as st
        import accelerate  # noqa: F401
    except ImportError as error:
        raise SimqaError(f"simqa adapt needs the adapt extra ({error.name} is missing): pip install 'simqa[adapt]' "
                         "(in a checkout: pip install -e '.[adapt]')") from None
    return st, datasets
