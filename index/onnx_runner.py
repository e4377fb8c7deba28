"""The query-time encoder: the same model exported to ONNX (fp32) and run by ONNX Runtime.

For one short query on 2 cores ONNX Runtime takes 2.2-2.9 ms where sentence-transformers on
torch takes 7-8.7 ms, with the same vectors (cosine 1.0000, benchmarks/results/speed/speed.md).
In fp32 every call runs here, batches included: fp32 torch was no faster on the machines we
measured (index/embed.py). In bf16 batches of 16 texts or more go to torch (2.3x faster on
AMX). The export is made once per model, from the loaded model, into the cache directory
(written to a temporary file and renamed, so readers never see half a file). Only the common
architecture is exported: transformer, mean pooling, optional normalisation; anything else
stays on torch.

Once the export exists, `from_directory` runs it from the model directory's own files (its
tokenizer.json through the `tokenizers` library, the configs sentence-transformers reads),
without importing torch, transformers or sentence-transformers: a cold `simqa search` then
loads in about a second instead of several (benchmarks/README.md, "Cold start").
"""

from __future__ import annotations

import json
import os
import threading
import uuid
import warnings
from pathlib import Path

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SPINNING = "SIMQA_ONNX_SPINNING"  # "0": ONNX Runtime's threads sleep between runs instead of spinning


_MODULES = {"sentence_transformers.models.Transformer": "Transformer", "sentence_transformers.models.Pooling": "Pooling",
            "sentence_transformers.models.Normalize": "Normalize"}
_ARCHITECTURES = (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"])


def supported(model) -> bool:
    """True for a SentenceTransformer made of Transformer, mean Pooling and optional Normalize."""
    names = [type(m).__name__ for m in model]
    return names in _ARCHITECTURES and model[1].pooling_mode == "mean"


def supported_directory(path: Path) -> bool:
    """`supported`, read from a model directory's configs without loading the model."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        names = [_MODULES.get(m["type"], m["type"]) for m in modules]
        pooling = json.loads((path / modules[1]["path"] / "config.json").read_text(encoding="utf-8")) if len(modules) > 1 else {}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    modes = {key for key, on in pooling.items() if key.startswith("pooling_mode") and on}
    return names in _ARCHITECTURES and modes == {"pooling_mode_mean_tokens"} and (path / "tokenizer.json").is_file()


def export_path(cache_directory: Path, fingerprint: str) -> Path:
    """Where a model's export lives: one file per model fingerprint."""
    return cache_directory / "onnx" / f"{fingerprint}.onnx"


class _Tokenizer:
    """A model's tokenizer.json, run by `tokenizers` as the fast tokenizer of transformers runs it:
    padding to the longest text of a call, truncation at the model's max_seq_length."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        config = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8")) \
            if (path / "sentence_bert_config.json").is_file() else {}
        padding = self.tokenizer.padding or {}
        self.tokenizer.enable_truncation(max_length=int(config.get("max_seq_length", 512)))
        self.tokenizer.enable_padding(pad_id=padding.get("pad_id", 0), pad_type_id=padding.get("pad_type_id", 0),
                                      pad_token=padding.get("pad_token", "[PAD]"))

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        return {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}


class OnnxRunner:
    """Encode texts with ONNX Runtime; vectors equal the torch model's (mean pooled, unit length)."""

    def __init__(self, tokenize, path: Path, threads: int) -> None:
        """`tokenize(texts)` gives the model's inputs as int64 arrays; `path` is the export."""
        import onnxruntime

        self.tokenize = tokenize
        # A fast tokenizer called with padding/truncation sets them on shared Rust state, which
        # fails under concurrent calls ("Already borrowed"); the session itself is thread-safe.
        self._tokenizer_lock = threading.Lock()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Its threads stop spinning when a run ends, not some time after: the query's search
        # stages come next and want both cores (a whole hybrid search on MedQuAD, 2 cores: 8.3
        # instead of 8.8-9.0 ms p50 in an A/B of this setting, the encoding as fast; README, Speed).
        options.add_session_config_entry("session.force_spinning_stop", "1")
        if os.environ.get(SPINNING, "1") == "0":
            # ...and spin within a run, which is fastest for a process that owns its cores, and
            # starves other busy processes on them: the shard replicas beside the ingress of simqa
            # serve --ray (search/served.py turns it off there).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        width = self.session.get_outputs()[0].shape[-1]
        self.dimension = width if isinstance(width, int) else None

    @classmethod
    def from_model(cls, model, path: Path, threads: int) -> "OnnxRunner":
        """From a loaded SentenceTransformer, exporting it to `path` first if need be."""
        if not path.is_file():
            _export(model, path)

        def tokenize(texts: list[str]) -> dict[str, np.ndarray]:
            batch = model.tokenizer(texts, padding=True, truncation=True, max_length=model.max_seq_length, return_tensors="np")
            return {name: np.asarray(values, dtype=np.int64) for name, values in batch.items()}

        return cls(tokenize, path, threads)

    @classmethod
    def from_directory(cls, model_path: Path, path: Path, threads: int) -> "OnnxRunner | None":
        """From the export and the model directory's files, torch never imported; None when
        there is no export yet or the model is not of the exported kind."""
        if not path.is_file() or not supported_directory(model_path):
            return None
        return cls(_Tokenizer(model_path), path, threads)

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._tokenizer_lock:
            batch = self.tokenize(texts)
        hidden = self.session.run(None, {name: batch[name] for name in self.inputs})[0]
        mask = batch["attention_mask"][..., None].astype(np.float32)
        vectors = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _export(model, path: Path) -> None:
    import torch

    class Hidden(torch.nn.Module):
        """The transformer with keyword inputs, returning the last hidden state."""

        def __init__(self, transformer) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *args):
            return self.transformer(**dict(zip(names, args))).last_hidden_state

    sample = model.tokenizer(["an example query"], return_tensors="pt")
    names = [n for n in INPUTS if n in sample]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    axes = {n: {0: "batch", 1: "tokens"} for n in (*names, "last_hidden_state")}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow: expected here
        torch.onnx.export(
            Hidden(model[0].auto_model.eval()), tuple(sample[n] for n in names), str(partial),
            input_names=names, output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False,
        )
    os.replace(partial, path)
