"""Decoding with and without the rules' masks, at several batch sizes.

    python benchmarks/mask_speed.py [--rules FILE ...] [--batches 16 256 1024] [--pairs 3]

Without masks the decoder runs all bars of a melody at once (in blocks of rows that stay in the
caches; a form file too, its repeated bars from their first statement's embeddings). With masks it does the same where every
rule of the file needs nothing but the step and its own bar's notes (key, range, chords, notes per
bar: the column "bars" says "at once"); a rule that looks across bar lines (a leap, the rests'
share, an end note) makes each melody be written step by step, its bars in sequence ("in
sequence"), and that costs most where few melodies are decoded together: the constraints' work and
the LSTM's small matmuls at each of 256 steps are shared by fewer rows. For each rules file
(default: the shipped examples with an actor target, and the two blues files) and each batch size,
the shipped fit's actor latents are decoded at temperature 0.5 with and without masks, checked by
the exact tests either way, in pairs back to back (the first pair warms up; the timing of
enforce_table.py); the columns are the median times per melody and the median of the pairs' speed
ratios (issue 15's target: with masks at least 0.80 the speed without). A last table times the
bars in sequence under a constraint that allows everything, against the bars at once: the most
that a decode in sequence could reach with constraints that cost nothing. Fits and batch exports
decode 1024 at a time (``enforce.DECODE_BATCH``); `generate -n 16` and the live engine's phrases, a
few.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from enforce_table import ACTOR_TARGET, mask_times

from melody_lc.cli.model import default_model_dir
from melody_lc.constrain import FIT_TEMPERATURE, cached_fit, shipped_fits_dir
from melody_lc.melody.hardware import describe_hardware, matmul_gflops
from melody_lc.melody.steer import Constraint, Steer
from melody_lc.melody.train import load_model
from melody_lc.rules import load_rules


class _Anything(Constraint):
    """Allows every class and has no ByBar: a decode under it runs the bars in sequence."""

    def allowed(self, state):
        return None


def sequence_floor(model, n: int, pairs: int) -> tuple[float, float]:
    """Median seconds of decoding n prior latents with the bars at once and in sequence (under
    :class:`_Anything`), in pairs back to back after one pair to warm up."""
    z = torch.randn(n, model.config.z_size, generator=torch.Generator().manual_seed(1))
    seconds = {False: [], True: []}
    for turn in range(pairs + 1):
        for in_sequence in (False, True):
            steer = Steer([("anything", _Anything())]) if in_sequence else None
            t = time.perf_counter()
            model.decode(z, FIT_TEMPERATURE, torch.Generator().manual_seed(2), steer=steer)
            if turn:
                seconds[in_sequence].append(time.perf_counter() - t)
    return float(np.median(seconds[False])), float(np.median(seconds[True]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = [f"rules/{name}.rules" for name in (*ACTOR_TARGET, "blues_riff", "twelve_bar_blues")]
    ap.add_argument("--rules", nargs="+", default=default)
    ap.add_argument("--batches", nargs="+", type=int, default=[16, 256, 1024])
    ap.add_argument("--pairs", type=int, default=3)
    args = ap.parse_args()
    model, _ = load_model(default_model_dir())
    print(
        f"{describe_hardware()}; float32 matmul {matmul_gflops():.0f} GFLOP/s; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; temperature {FIT_TEMPERATURE}, the shipped fits' actor latents"
    )
    print(
        "\n| rules | bars | melodies | ms per melody, no masks | with masks | speed with masks / without |"
        "\n|---|---|---:|---:|---:|---:|"
    )
    worst = {}
    for path in args.rules:
        rules = load_rules(path)
        fitted = cached_fit(rules, model, [], search=(shipped_fits_dir(),))
        if fitted is None:
            raise SystemExit(f"{path}: no shipped fit (this benchmark times the shipped fits' latents)")
        name = path.rsplit("/", 1)[-1].removesuffix(".rules")
        cond = rules.sample_conditions(1, np.random.default_rng(0)) if rules.open else None
        bars = "at once" if rules.steer(cond, 1).start_bars(1) else "in sequence"
        for n in args.batches:
            ratio, plain, masked = mask_times(rules, model, fitted, n, args.pairs)
            worst.setdefault(n, {})
            worst[n][bars] = min(worst[n].get(bars, ratio), ratio)
            print(
                f"| {name} | {bars} | {n} | {plain / n * 1000:.2f} | {masked / n * 1000:.2f} | {ratio:.2f} |",
                flush=True,
            )
    print()
    for n, by_mode in worst.items():
        words = ", ".join(f"bars {mode}: at least {ratio:.2f}x" for mode, ratio in sorted(by_mode.items()))
        print(f"{n} melodies at once: speed with masks / without, {words} (target >= 0.80)")
    print(
        "\nno constraint to keep, prior latents: the bars in sequence against the bars at once"
        "\n\n| melodies | ms per melody, bars at once | in sequence | speed in sequence / at once |"
        "\n|---:|---:|---:|---:|"
    )
    for n in args.batches:
        at_once, in_sequence = sequence_floor(model, n, args.pairs)
        print(f"| {n} | {at_once / n * 1000:.2f} | {in_sequence / n * 1000:.2f} | {at_once / in_sequence:.2f} |")


if __name__ == "__main__":
    main()
