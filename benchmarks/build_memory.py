"""Peak memory of a MIDI-directory build grows with the shard size, not with the number of files.

    python benchmarks/build_memory.py --files 1000 4000

Writes N synthetic MIDI files (random 24-bar melodies, two tracks each) into a temporary
directory, builds the dataset in a child process with 2 workers, and prints the child's peak
resident memory (main process and workers) for each N. A Lakh-sized directory (176k files) is
out of reach here; the figure to read is how little the peak moves when N grows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import mido
import numpy as np

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from melody_lc.melody.build import BuildPlan, build_dataset, midi_tasks
from melody_lc.melody.extract import ExtractionConfig
from melody_lc.melody.sources import list_midi_files
src, out = Path(sys.argv[1]), Path(sys.argv[2])
plan = BuildPlan({"kind": "midi", "dir": str(src)}, midi_tasks(list_midi_files(src), src), ExtractionConfig(), 0)
t = time.perf_counter()
m = build_dataset(plan, out, workers=2, shard_windows=20000)
dt = time.perf_counter() - t
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": dt, "windows": sum(m["stats"]["windows"].values()), "main_mb": own / 1024, "worker_mb": kids / 1024}))
"""


def write_files(root: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        mid = mido.MidiFile(type=1, ticks_per_beat=480)
        for _ in range(2):
            track = mido.MidiTrack()
            pitches = rng.integers(48, 84, 24 * 8)
            for p in pitches:
                track.append(mido.Message("note_on", note=int(p), velocity=80, time=0))
                track.append(mido.Message("note_off", note=int(p), velocity=0, time=240))
            mid.tracks.append(track)
        mid.save(str(root / f"f{i:06d}.mid"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, nargs="+", default=[1000, 4000])
    args = ap.parse_args()
    print(f"{'files':>7} {'windows':>9} {'seconds':>8} {'main peak MB':>13} {'worker peak MB':>15}")
    for n in args.files:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "midi"
            src.mkdir()
            write_files(src, n)
            res = subprocess.run(
                [sys.executable, "-c", CHILD, str(src), str(Path(tmp) / "out")],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(res.stdout.strip().splitlines()[-1])
        print(
            f"{n:>7,} {r['windows']:>9,} {r['seconds']:>8.1f} {r['main_mb']:>13.0f} {r['worker_mb']:>15.0f}", flush=True
        )


if __name__ == "__main__":
    main()
