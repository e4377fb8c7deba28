"""manifest.json: what an index directory holds and how it was built.

It records the format version, the model (name, fingerprint, dimension), counts and parameters,
and every file's size, SHA-256 and modification time. Opening an index checks the format
version, the model, and every file's size and modification time (`verify(..., full=False)`):
a file written to since the build (truncated, patched, replaced by another) has another
modification time, and only such a file is read for its SHA-256, which then names it if it
differs. So opening costs a stat per file whatever the corpus size, and damage done through
the file system is still reported before an answer is given. Damage the file system does not
see (a bit flipped on the disk, not by a write) needs the full check: `simqa verify`, or
`Searcher.open(..., verify=True)`. An index copied without its modification times (`cp -r`, not
`cp -a` or `rsync -t`) is checksummed whole on every open, as before.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from index.embed import model_fingerprint
from index.errors import IndexFormatError
from index.text import TOKENIZER

FORMAT_VERSION = 5  # 5: the store holds each consultation's snippet (index/snippets.py); 4: the store's ids and question hashes in .npy; 3: the store has filter columns; 2: generations (index/generations.py); 1 had the files at the top
MANIFEST = "manifest.json"


@dataclass
class Manifest:
    """The contents of manifest.json."""

    model: str
    model_fingerprint: str
    dimension: int
    counts: dict
    parameters: dict
    built_at: str
    files: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def write(self, directory: Path) -> None:
        """Record every file of the directory, then write the manifest itself."""
        self.files = {
            p.relative_to(directory).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_of(p), "mtime_ns": p.stat().st_mtime_ns}
            for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        }
        (directory / MANIFEST).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, directory: Path) -> "Manifest":
        """Read and check a manifest; IndexFormatError says what is wrong."""
        path = directory / MANIFEST
        if not path.is_file():
            raise IndexFormatError(f"{directory}: not a simqa index (no {MANIFEST}); build one with 'simqa index'")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise IndexFormatError(f"{path}: unreadable manifest ({error})") from None
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"{path}: index format version {version!r}, this simqa reads version {FORMAT_VERSION}; rebuild the index"
            )
        try:
            manifest = cls(**data)
        except TypeError as error:
            raise IndexFormatError(f"{path}: manifest fields do not match format {FORMAT_VERSION} ({error})") from None
        tokenizer = manifest.parameters.get("tokenizer")
        if tokenizer != TOKENIZER:
            raise IndexFormatError(f"{path}: index tokenized as {tokenizer!r}, this simqa tokenizes as {TOKENIZER!r}; rebuild the index")
        return manifest

    def verify(self, directory: Path, full: bool = True) -> None:
        """Check every listed file exists with its size and SHA-256: every file's SHA-256 when
        `full`, else only of files modified since the manifest was written (module docstring).
        IndexFormatError names the first bad one."""
        for name, entry in self.files.items():
            path = directory / name
            if not path.is_file():
                raise IndexFormatError(f"{path}: missing; the index is damaged, rebuild it")
            status = path.stat()
            if status.st_size != entry["bytes"]:
                raise IndexFormatError(f"{path}: {status.st_size} bytes, the manifest records {entry['bytes']}; the index is damaged, rebuild it")
            if (full or status.st_mtime_ns != entry.get("mtime_ns")) and sha256_of(path) != entry["sha256"]:
                raise IndexFormatError(f"{path}: checksum differs from the manifest's; the index is damaged, rebuild it")

    def check_model(self, model: str, path: Path) -> str:
        """Refuse a model other than the one the index was built with: `model` names it, `path`
        is its directory; returns the directory's fingerprint (a loaded encoder of it is the
        model's when their fingerprints are equal). Indexes written before model fingerprints
        sampled the weights record the form without them (index.embed.model_fingerprint),
        accepted too."""
        fingerprint = model_fingerprint(path)
        if self.model_fingerprint != fingerprint and self.model_fingerprint != model_fingerprint(path, weights=False):
            raise IndexFormatError(
                f"index was built with model {self.model} (fingerprint {self.model_fingerprint}), "
                f"not {model} (fingerprint {fingerprint}); use the same model or rebuild the index"
            )
        return fingerprint

    def check_dimension(self, dimension: int) -> None:
        if dimension != self.dimension:
            raise IndexFormatError(f"model gives {dimension}-dimensional vectors, the index holds {self.dimension}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
