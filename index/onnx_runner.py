"""The query-time encoder: the same model exported to ONNX (fp32) and run by ONNX Runtime.

For one short query on 2 cores ONNX Runtime takes 2.2-2.9 ms where sentence-transformers on
torch takes 7-8.7 ms, with the same vectors (cosine 1.0000, benchmarks/results/speed/speed.md).
Batches stay on torch (index/embed.py, ONNX_BELOW): from about 16 texts torch is faster, and
bf16 on AMX is faster still. The export is made once per model, from the loaded model, into the
cache directory (written to a temporary file and renamed, so readers never see half a file).
Only the common architecture is exported: transformer, mean pooling, optional normalisation;
anything else stays on torch.
"""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from pathlib import Path

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def supported(model) -> bool:
    """True for a SentenceTransformer made of Transformer, mean Pooling and optional Normalize."""
    names = [type(m).__name__ for m in model]
    return names in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) and model[1].pooling_mode == "mean"


class OnnxRunner:
    """Encode texts with ONNX Runtime; vectors equal the torch model's (mean pooled, unit length)."""

    def __init__(self, model, path: Path, threads: int) -> None:
        import onnxruntime

        self.tokenizer = model.tokenizer
        self.max_length = model.max_seq_length
        # A fast tokenizer called with padding/truncation sets them on shared Rust state, which
        # fails under concurrent calls ("Already borrowed"); the session itself is thread-safe.
        self._tokenizer_lock = threading.Lock()
        if not path.is_file():
            _export(model, path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._tokenizer_lock:
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        hidden = self.session.run(None, {name: batch[name].astype(np.int64) for name in self.inputs})[0]
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
