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
    batch = [f"{text} {i}" for i in range(ONNX_BELOW) for text in TEXTS[:2]]
    expected = fp32_encoder.embed(batch)
    bf16 = Encoder(precision="bf16")
    for encoder in (bf16, onnx_encoder):  # a batch this big runs on torch in the ONNX encoder too
        onnx_runs = []
        if encoder._onnx is not None:
            monkeypatch.setattr(encoder._onnx, "encode", lambda texts: onnx_runs.append(texts))
        got = encoder.embed(batch)
        assert got.dtype == np.float32 and onnx_runs == []
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert (got * expected).sum(axis=1).min() > 0.999


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
