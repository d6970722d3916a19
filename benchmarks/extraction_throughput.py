"""Extraction throughput of `melody-lc data build` on music21's corpus, at 1 and 2 workers.

    python benchmarks/extraction_throughput.py                 # the whole corpus (takes a while)
    python benchmarks/extraction_throughput.py --limit 500     # a quick look on the first 500 tunes

Each run builds into a fresh temporary directory (no cache), so parsing is measured every time.
Prints files/s, tunes/s and windows/s per worker count, and the speed-up over one worker measured
in the same run (a ratio that holds across machines better than the absolute figures).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from melody_lc.melody.build import BuildPlan, build_dataset, music21_tasks
from melody_lc.melody.extract import ExtractionConfig
from melody_lc.melody.sources import DEFAULT_COLLECTIONS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--collections", default=",".join(DEFAULT_COLLECTIONS))
    ap.add_argument("--limit", type=int, default=0, help="only the first N parse jobs (0: all)")
    args = ap.parse_args()

    collections = args.collections.split(",")
    tasks = music21_tasks(collections)
    if args.limit:
        tasks = tasks[: args.limit]
    files = len({t.path for t in tasks})
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"corpus: {', '.join(collections)}: {files:,} files, {len(tasks):,} parse jobs"
    )
    print(
        f"{'workers':>7} {'seconds':>8} {'files/s':>8} {'tunes/s':>8} {'windows/s':>10} {'windows':>8} {'speed-up':>8}"
    )
    base = None
    for w in args.workers:
        plan = BuildPlan({"kind": "music21", "collections": collections}, tasks, ExtractionConfig(), seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            manifest = build_dataset(plan, Path(tmp) / "ds", workers=w)
            dt = time.perf_counter() - t0
        s = manifest["stats"]
        windows = sum(s["windows"].values())
        base = base or dt
        print(
            f"{w:>7} {dt:>8.1f} {s['files_read'] / dt:>8.2f} {s['tunes'] / dt:>8.1f} {windows / dt:>10.1f} "
            f"{windows:>8,} {base / dt:>7.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
