"""Why the zero-shot fit is built as it is: the fit of the paper's two constraints (C major and at
least 3 notes per bar) with each of its design choices undone in turn, on the shipped model.

    python benchmarks/fit_choices.py [--model DIR] [--data DIR] [-n 1024]

Rows: melody-lc's fit (defaults); the paper's gated actor instead of the bounded step; one reward
critic that the actor follows as it answers (no ensemble, no pessimism); the critics fed the actor's
own outputs (reward critics on all scored latents, realism critic with the actor's outputs as
fakes: the loop of a GAN); and the actor trained ten times longer against each round's critics.
Columns: the actor's true satisfaction of both rules on fresh prior latents (its melodies decoded
at the fit temperature, unsteered, and scored by the exact tests), the mean latent shift, the
spread (mean distance between the moved latents over that between the prior latents they came
from: near 0, every melody comes from nearly one place), the fit's best round and its time. Fits
are cached (melody-lc's fit cache), so a rerun measures again without fitting again.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from melody_lc.constrain import FIT_TEMPERATURE, fit_rules, generate
from melody_lc.engine import FitConfig
from melody_lc.melody.dataset import MelodyDataset
from melody_lc.melody.train import load_model
from melody_lc.paths import cache_dir
from melody_lc.rules import parse_rules

RULES = "key: C major\ndensity: >= 3 notes per bar"
CHOICES = {  # row -> the fit's settings
    "melody-lc's fit": FitConfig(),
    "paper's gated actor (no bounded step)": replace(FitConfig(), actor_max_step=None),
    "one critic, followed as it answers": replace(FitConfig(), ensemble=1, pessimism=0.0),
    "critics fed the actor's outputs": replace(FitConfig(), critic_data="all", realism_fakes="prior+actor"),
    "actor trained 10x longer per round": replace(FitConfig(), actor_steps=1000),
}


def main() -> None:
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.cli.model import default_model_dir
    from melody_lc.melody.hardware import describe_hardware
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--data", default=str(default_corpus_out(list(DEFAULT_COLLECTIONS))))
    ap.add_argument("-n", type=int, default=1024)
    args = ap.parse_args()

    model, _ = load_model(args.model)
    windows = MelodyDataset(args.data).windows("train")
    rules = parse_rules(RULES, "c_major_dense")
    print(f"{describe_hardware()}, {torch.get_num_threads()} threads; rules: {RULES.replace(chr(10), ', ')}")
    print(
        f"{args.n} fresh prior latents per row, decoded at temperature {FIT_TEMPERATURE:g} without the rules' masks\n"
    )
    print("| fit | satisfied (actor alone) | latent shift | spread | best round | fit seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, cfg in CHOICES.items():
        t = time.perf_counter()
        fitted = fit_rules(rules, model, windows, cfg, cache_dir=cache_dir() / "fits")
        seconds = fitted.meta.get("seconds", time.perf_counter() - t)
        tokens, report = generate(
            rules, model, args.n, fitted, method="actor", seed=1, temperature=FIT_TEMPERATURE, enforce=False, mask=False
        )
        print(
            f"| {name} | {rules.satisfied(tokens).all(1).mean():.1%} | {float(report['mean_latent_shift']):.2f} | "
            f"{report['spread']:.2f} | {fitted.meta.get('best_round', '?')} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
