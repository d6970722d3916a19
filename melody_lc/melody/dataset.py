"""A melody dataset on disk, and reading it (:mod:`melody_lc.melody.build` builds one).

On disk a dataset is a directory::

    manifest.json              format version, source, extraction config, counts, histograms,
                               every skipped file with its reason, the list of shards
    shard-00000.safetensors    tokens (N, 256) uint8, split (N,) uint8, tune (N,) int32;
                               the shard's tune names are in the safetensors metadata

Splits are assigned per source tune (never per window), so overlapping windows of one tune never
straddle two splits; see :mod:`melody_lc.melody.build`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

from melody_lc.melody.encoding import STEPS
from melody_lc.melody.errors import MelodyError

FORMAT_VERSION = 1
SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)


class DatasetError(MelodyError):
    """A dataset directory that is missing, of another format version, or damaged."""


def load_shard(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(str(path), framework="numpy") as f:
        names = json.loads((f.metadata() or {}).get("tunes", "[]"))
    return load_file(str(path)), names


def read_manifest(path: Path) -> dict | None:
    """The manifest of a dataset directory of this format, or None."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(manifest, dict) and manifest.get("format_version") == FORMAT_VERSION and "fingerprint" in manifest
    return manifest if ok else None


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
class MelodyDataset:
    """A built dataset directory: ``windows(split)`` gives its (N, 256) uint8 token array."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        mpath = self.path / "manifest.json"
        if not mpath.exists():
            raise DatasetError(
                f"{self.path}: not a melody dataset (no manifest.json); build one with `melody-lc data build`"
            )
        try:
            self.manifest = json.loads(mpath.read_text())
        except ValueError as e:
            raise DatasetError(f"{mpath}: damaged manifest ({e})") from None
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise DatasetError(
                f"{self.path}: dataset format {self.manifest.get('format_version')}, "
                f"this melody-lc reads format {FORMAT_VERSION}; rebuild it"
            )
        self._cache: tuple[np.ndarray, np.ndarray, list[str]] | None = None

    def _load(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        if self._cache is None:
            tokens, split, names = [], [], []
            for s in self.manifest["shards"]:
                arrays, shard_names = load_shard(self.path / s["file"])
                tokens.append(arrays["tokens"])
                split.append(arrays["split"])
                names.extend(shard_names[i] for i in arrays["tune"])
            if tokens:
                self._cache = (np.concatenate(tokens), np.concatenate(split), names)
            else:
                self._cache = (np.zeros((0, STEPS), np.uint8), np.zeros(0, np.uint8), [])
        return self._cache

    def windows(self, split: str = "train") -> np.ndarray:
        """All windows of a split, ``(N, 256)`` uint8."""
        tokens, splits, _ = self._load()
        return tokens[splits == SPLITS.index(split)]

    def tune_names(self, split: str = "train") -> list[str]:
        """The source tune of each window of a split, aligned with :meth:`windows`."""
        _, splits, names = self._load()
        idx = np.flatnonzero(splits == SPLITS.index(split))
        return [names[i] for i in idx]

    def __len__(self) -> int:
        return sum(self.manifest["stats"]["windows"].values())


# --------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------
def format_summary(manifest: dict, out: str | os.PathLike, max_listed: int = 20) -> str:
    """The human summary printed after a build."""
    s = manifest["stats"]
    src = manifest["source"]
    lines = [f"melody dataset: {out}" + ("  (up to date: reused the cached build)" if manifest.get("reused") else "")]
    where = src.get("dir") or ", ".join(src.get("collections", []) or src.get("files", []))
    lines.append(f"source: {src['kind']} ({where})")
    lines.append(
        f"files read: {s['files_read']:,}   tunes: {s['tunes']:,}   files or tunes skipped: {len(s['skipped']):,}"
    )
    for reason, n in sorted(s["skip_reasons"].items(), key=lambda x: -x[1]):
        lines.append(f"  skipped {n:,}: {reason}")
    for name, reason in s["skipped"][:max_listed]:
        lines.append(f"    {name}: {reason}")
    if len(s["skipped"]) > max_listed:
        lines.append(f"    ... {len(s['skipped']) - max_listed:,} more in {Path(out) / 'manifest.json'}")
    w = s["windows"]
    lines.append(
        "windows: "
        + "   ".join(f"{k} {w[k]:,} ({s['tunes_per_split'][k]:,} tunes)" for k in SPLITS)
        + f"   total {sum(w.values()):,}"
    )
    lines.append(
        f"  dropped: {s['dropped_empty']:,} nearly empty, {s['dropped_duplicate']:,} duplicates; "
        f"{s['tunes_without_windows']:,} tunes gave no window (shorter than 16 bars, nearly empty, or an unused meter)"
    )
    lines.append("meters (tunes): " + _hist(s["meters"], mark=s["skipped_meters"]))
    lines.append("keys (tunes): " + _hist(s["keys"], top=24))
    return "\n".join(lines)


def _hist(counts: dict, top: int = 12, mark: dict | None = None) -> str:
    items = Counter(counts).most_common(top)
    text = ", ".join(f"{k} {v:,}" + (" (left out)" if mark and k in mark else "") for k, v in items)
    rest = len(counts) - len(items)
    return text + (f", ... {rest} more" if rest > 0 else "") if text else "none"
