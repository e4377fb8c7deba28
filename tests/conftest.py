"""Shared fixtures: the seed pages, one loaded model, and one seeds index per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from index import BuildConfig, build_index, read_sources
from index.embed import Encoder
from search import Searcher

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SEED_000 = "000_d8a51fa88222d8b0"
SEED_003 = "003_317d750049faf492"

# The CLI caches embeddings under the user's cache directory by default; tests use their own.
# Once: test modules import this file again as tests.conftest, which must not move it.
if "SIMQA_TEST_CACHE" not in os.environ:
    os.environ["SIMQA_TEST_CACHE"] = os.environ["SIMQA_CACHE"] = str(Path(tempfile.mkdtemp(prefix="simqa-test-cache-")) / "embeddings.sqlite")


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    """fp32 on every machine: tests that compare vectors across batches need batch-independent
    vectors, which bf16 does not give (tests/test_embed.py covers bf16)."""
    return Encoder(precision="fp32")


@pytest.fixture(scope="session")
def seeds_index(tmp_path_factory, encoder) -> Path:
    directory = tmp_path_factory.mktemp("seeds") / "index"
    build_index(read_sources([SEEDS]).consultations, directory, BuildConfig(progress=False), encoder=encoder)
    return directory


@pytest.fixture(scope="session")
def searcher(seeds_index) -> Searcher:
    return Searcher.open(seeds_index)


def other_weights(encoder: Encoder, directory: Path) -> Path:
    """A copy of the model whose weights differ but whose files have the same names, sizes and
    JSON: a model saved over another of its shape."""
    shutil.copytree(encoder.model_path, directory)
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = data[-64:][::-1]  # the last tensor's last values, in another order
    weights.write_bytes(bytes(data))
    return directory
