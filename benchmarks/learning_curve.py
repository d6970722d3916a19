"""The default model's learning curve: every committed version of the training checkpoint, evaluated.

    python benchmarks/learning_curve.py [--run runs/melody-16bar-folk] [--data DIR] [--samples 1024]

Each commit that changed ``RUN/weights.safetensors`` is read from git into a temporary folder and
evaluated on the test split exactly as ``melody-lc evaluate`` does (teacher-forced and free-running
accuracy, feature overlap). Then a least-squares line of each accuracy against log10(steps) says how
many steps the current pace would need to reach the issue's targets (0.90 teacher-forced, 0.75
free-running). The line is only a yardstick: learning curves usually bend flatter, so the true
number is larger.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from melody_lc.melody.dataset import MelodyDataset
from melody_lc.melody.evaluate import evaluate
from melody_lc.melody.model_card import TARGETS
from melody_lc.melody.train import load_model

CURVES = ("teacher_forced_accuracy", "free_running_accuracy", "free_running_note_accuracy")  # extrapolated
FILES = ("config.json", "weights.safetensors")


def committed_versions(run: str) -> list[str]:
    out = subprocess.run(
        ["git", "log", "--format=%H", "--", f"{run}/weights.safetensors"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[::-1]


def main() -> None:
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/melody-16bar-folk")
    ap.add_argument("--data", default=str(default_corpus_out(list(DEFAULT_COLLECTIONS))))
    ap.add_argument("--samples", type=int, default=1024, help="prior samples for the feature overlap")
    args = ap.parse_args()
    heldout = MelodyDataset(args.data).windows("test")
    rows = []
    for commit in committed_versions(args.run):
        with tempfile.TemporaryDirectory() as tmp:
            for name in FILES:
                blob = subprocess.run(
                    ["git", "show", f"{commit}:{args.run}/{name}"], capture_output=True, check=True
                ).stdout
                (Path(tmp) / name).write_bytes(blob)
            model, meta = load_model(tmp)
        figures = evaluate(model, heldout, num_samples=args.samples)
        rows.append((meta["steps"], figures))
        print(
            json.dumps(
                {
                    "commit": commit[:7],
                    "steps": meta["steps"],
                    "hours": round(meta.get("train_seconds", 0) / 3600, 2),
                    "teacher_forced_accuracy": round(figures["teacher_forced_accuracy"], 4),
                    "free_running_accuracy": round(figures["free_running_accuracy"], 4),
                    "feature_overlap": round(figures["feature_overlap"]["mean"], 4),
                }
            ),
            flush=True,
        )
    print("\n| steps | teacher-forced | free-running | feature overlap |\n|---:|---:|---:|---:|")
    for steps, f in rows:
        print(
            f"| {steps:,} | {f['teacher_forced_accuracy']:.3f} | {f['free_running_accuracy']:.3f} "
            f"| {f['feature_overlap']['mean']:.3f} |"
        )
    if len(rows) < 2:
        return
    x = np.log10([s for s, _ in rows])
    for key in CURVES:
        target = TARGETS[key]
        y = np.array([f[key] for _, f in rows])
        slope, intercept = np.polyfit(x, y, 1)
        gain = slope * np.log10(2)
        need = f"{10 ** ((target - intercept) / slope):,.0f} steps" if slope > 0 else "never at this pace"
        print(f"{key}: +{gain:.3f} per doubling of the steps; {target} at about {need} on the line")


if __name__ == "__main__":
    main()
