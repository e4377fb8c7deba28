"""The encoder: ONNX query vectors equal torch's, bf16 vectors fp32's; the cache answers what
it has seen."""

import numpy as np
import pytest

from index import embed
from index.embed import ONNX_BELOW, Encoder

TEXTS = ["knee pain after running", "What are the treatments for Noonan syndrome?", "twitch " * 400]


@pytest.fixture(scope="module")
def onnx_encoder():
    return Encoder(backend="onnx")


@pytest.fixture(scope="module")
def fp32_encoder():
    return Encoder(precision="fp32")


def test_onnx_backend_gives_the_torch_vectors(fp32_encoder, onnx_encoder):
    assert onnx_encoder.backend == "onnx" and fp32_encoder.backend == "torch"
    got, expected = onnx_encoder.embed(TEXTS), fp32_encoder.embed(TEXTS)
    assert got.shape == expected.shape == (3, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_bf16_vectors_are_the_fp32_vectors(fp32_encoder, onnx_encoder, monkeypatch):
    """bf16 batches run on torch, in an ONNX encoder too (2.3x faster on AMX), with vectors at
    cosine 0.999 to fp32's."""
    batch = [f"{text} {i}" for i in range(ONNX_BELOW) for text in TEXTS[:2]]
    expected = fp32_encoder.embed(batch)
    assert onnx_encoder.backend == "onnx"  # the export exists
    for encoder in (Encoder(precision="bf16"), Encoder(backend="onnx", precision="bf16")):
        onnx_runs = []
        if encoder._onnx is not None:
            monkeypatch.setattr(encoder._onnx, "encode", lambda texts: onnx_runs.append(texts))
        got = encoder.embed(batch)
        assert got.dtype == np.float32 and onnx_runs == [] and encoder._model is not None
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert (got * expected).sum(axis=1).min() > 0.999


def test_fp32_batches_run_on_onnx(fp32_encoder, onnx_encoder):
    """In fp32 an ONNX encoder runs batches on ONNX Runtime too (a server's batch request, an
    update's new texts), in length-ordered calls, even with torch loaded: fp32 torch was no
    faster, and loading it costs seconds. The torch vectors; the model is not loaded for them."""
    texts = [f"{text} {i}" for i in range(20) for text in TEXTS[:2]]
    assert len(texts) > ONNX_BELOW and onnx_encoder.backend == "onnx"  # the export exists
    cold = Encoder(backend="onnx", dimension=384, precision="fp32")
    got = cold.embed(texts)
    assert cold._model is None and got.shape == (40, 384)
    np.testing.assert_allclose(got, fp32_encoder.embed(texts), atol=1e-5)
    cold.model  # loaded (a build in the same process, say): batches stay on ONNX Runtime
    np.testing.assert_allclose(cold.embed(texts), got, atol=1e-6)


def test_remembered_vectors_are_read_by_the_rows_asked(monkeypatch):
    """An update remembers the index's vectors as stored, 8-bit codes included: embed() decodes
    the rows it is asked for, REMEMBERED_ROWS at a time, never the whole array, and encodes nothing."""
    from index import vectors

    rng = np.random.default_rng(0)
    units = rng.normal(size=(300, 384)).astype(np.float32)
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    held = vectors.stored(vectors.build(units, vectors.COMPRESSED))
    monkeypatch.setattr(vectors.QuantizedVectors, "__array__", lambda *_: pytest.fail("decoded whole"))
    monkeypatch.setattr(embed, "REMEMBERED_ROWS", 64)
    remembering = Encoder(dimension=384, precision="fp32")
    monkeypatch.setattr(remembering, "_encode", lambda texts, bar=None: pytest.fail(f"encoded: {texts}"))
    texts = [f"text {i}" for i in range(300)]
    remembering.remember(texts, held)
    got = remembering.embed(texts[:99:-1] + ["text 5"])
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, held[np.r_[np.arange(299, 99, -1), 5]])


def test_auto_precision_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(embed, "native_bf16", lambda: True)
    assert embed.resolve_precision("auto") == "bf16" and embed.resolve_precision("fp32") == "fp32"
    monkeypatch.setattr(embed, "native_bf16", lambda: False)
    assert embed.resolve_precision("auto") == "fp32" and embed.resolve_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        embed.resolve_precision("fp16")


def test_cache_answers_seen_texts_without_the_model(tmp_path, encoder, monkeypatch):
    cached = Encoder(cache=tmp_path / "cache.sqlite", precision="fp32")
    first = cached.embed(TEXTS)
    monkeypatch.setattr(cached, "_encode", lambda texts, bar=None: pytest.fail(f"encoded again: {texts}"))
    np.testing.assert_array_equal(cached.embed(list(reversed(TEXTS))), first[::-1])
    np.testing.assert_allclose(first, encoder.embed(TEXTS), atol=1e-5)
    assert cached.embed([]).shape == (0, 384)


def test_cache_keeps_bf16_vectors_apart_from_fp32(tmp_path, encoder, monkeypatch):
    path = tmp_path / "cache.sqlite"
    bf16 = Encoder(cache=path, precision="bf16", dimension=384)
    monkeypatch.setattr(bf16, "_encode", lambda texts, bar=None: np.full((len(texts), 384), 0.05, dtype=np.float32))
    bf16.embed(TEXTS)
    fp32 = Encoder(cache=path, precision="fp32")
    np.testing.assert_allclose(fp32.embed(TEXTS), encoder.embed(TEXTS), atol=1e-5)  # encoded, not the bf16 rows
    np.testing.assert_array_equal(Encoder(cache=path, precision="bf16", dimension=384).embed(TEXTS[:1]),
                                  np.full((1, 384), 0.05, dtype=np.float32))


def test_queries_run_from_the_export_without_torch(fp32_encoder, onnx_encoder, seeds_index):
    """Once the export exists (onnx_encoder made it), a fresh process encodes queries from the
    model directory's tokenizer.json and the export alone: the same vectors, torch never imported."""
    import subprocess
    import sys

    from index import onnx_runner
    from tests.conftest import ROOT

    assert onnx_encoder.backend == "onnx"  # the export is made here if it was not before
    runner = onnx_runner.OnnxRunner.from_directory(onnx_encoder.model_path, onnx_encoder._export_path(), threads=1)
    texts = TEXTS + ["a", "mixed lengths in one padded batch, with accents: café, naïve"]
    np.testing.assert_allclose(runner.encode(texts), fp32_encoder.embed(texts), atol=1e-5)
    assert runner.dimension == 384
    script = ("import sys; from search import Searcher; s = Searcher.open(sys.argv[1]); "
              "hits = s.search('my neck twitches when I am nervous', k=2); "
              "print(len(hits), s.query_encoder().backend, 'torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script, str(seeds_index)], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["2", "onnx", "False", "False"]
