"""The encoder: ONNX query vectors equal torch's; the cache answers what it has seen."""

import numpy as np
import pytest

from index.embed import Encoder

TEXTS = ["knee pain after running", "What are the treatments for Noonan syndrome?", "twitch " * 400]


@pytest.fixture(scope="module")
def onnx_encoder():
    return Encoder(backend="onnx")


def test_onnx_backend_gives_the_torch_vectors(encoder, onnx_encoder):
    assert onnx_encoder.backend == "onnx" and encoder.backend == "torch"
    got, expected = onnx_encoder.embed(TEXTS), encoder.embed(TEXTS)
    assert got.shape == expected.shape == (3, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_cache_answers_seen_texts_without_the_model(tmp_path, encoder, monkeypatch):
    cached = Encoder(cache=tmp_path / "cache.sqlite")
    first = cached.embed(TEXTS)
    monkeypatch.setattr(cached, "_encode", lambda texts: pytest.fail(f"encoded again: {texts}"))
    np.testing.assert_array_equal(cached.embed(list(reversed(TEXTS))), first[::-1])
    np.testing.assert_allclose(first, encoder.embed(TEXTS), atol=1e-5)
    assert cached.embed([]).shape == (0, 384)
