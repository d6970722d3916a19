"""The paper's zero-shot melody table (Engel et al. 2018, table 4), on a melody-lc model, in one run.

    python benchmarks/paper_table.py [--model DIR] [--data DIR] [-n 1024] [--temperature 0.5]

Rows: prior samples; the actor fitted for C major; the actor fitted for C major + density (at least
3 notes in every bar); gradient search on the C major + density critics; rejection sampling from the
prior for C major + density; and what melody-lc hands over, decoded under the rules' constraints
and verified (redrawn where a melody fails), from prior latents and from the actor's, with how
often the mask overruled the decoder per melody. Columns: satisfaction and mean reward per constraint, both together,
mean latent shift, spread (the mean distance between the latents of the row's melodies over that
between the prior latents they came from: near 0, every melody comes from nearly one place), and
wall time per satisfying melody (generation only; fitting is reported apart). The paper's gated
actor is fitted too, for comparison with the bounded step that melody-lc uses (see engine/nets.py).

All melodies are decoded by sampling at the same temperature (default 0.5, the temperature the
actors are fitted at). For the scale of the latent shifts, see benchmarks/latent_scale.py.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from melody_lc.constrain import FIT_TEMPERATURE, fit_rules, generate, shipped_fits_dir
from melody_lc.engine import FitConfig
from melody_lc.melody.dataset import MelodyDataset
from melody_lc.melody.hardware import use_bf16
from melody_lc.melody.train import load_model
from melody_lc.paths import cache_dir
from melody_lc.rules import parse_rules

C_MAJOR = "key: C major"
C_MAJOR_DENSE = "key: C major\ndensity: >= 3 notes per bar"


def main() -> None:
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.cli.model import default_model_dir
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--data", default=str(default_corpus_out(list(DEFAULT_COLLECTIONS))))
    ap.add_argument("-n", type=int, default=1024)
    ap.add_argument("--temperature", type=float, default=FIT_TEMPERATURE)
    ap.add_argument("--reject-n", type=int, default=64, help="melodies rejection sampling must find (it is slow)")
    args = ap.parse_args()

    model, _ = load_model(args.model)
    windows = MelodyDataset(args.data).windows("train")
    both = parse_rules(C_MAJOR_DENSE, "c_major_dense")
    key_only = parse_rules(C_MAJOR, "c_major")
    fits = {}
    for name, rules, cfg in (
        ("C major", key_only, FitConfig()),
        ("C major + density", both, FitConfig()),
        ("gated", both, replace(FitConfig(), actor_max_step=None)),
    ):
        t = time.perf_counter()
        fits[name] = fit_rules(rules, model, windows, cfg, cache_dir=cache_dir() / "fits", search=(shipped_fits_dir(),))
        m = fits[name].meta
        print(
            f"fit {name}: {m['seconds']:.0f} s when fitted ({time.perf_counter() - t:.0f} s now, cached fits load at once), "
            f"best round {m['best_round']}, {torch.get_num_threads()} CPU threads"
        )

    rows = []
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    prior = model.sample(args.n, args.temperature, g, bf16=use_bf16("auto", torch.device("cpu"))).numpy()
    rows.append(("prior", both, prior, 0.0, 1.0, time.perf_counter() - t, None))
    for name, rules, fitted, method, how in (
        ("actor: C major", key_only, fits["C major"], "actor", "raw"),
        ("actor: C major + density", both, fits["C major + density"], "actor", "raw"),
        ("paper's gated actor: C major + density", both, fits["gated"], "actor", "raw"),
        ("gradient search: C major + density", both, fits["C major + density"], "gd", "raw"),
        ("rejection: C major + density", both, None, "reject", "verify"),
        ("prior + mask + redraw: C major + density", both, None, "reject", "enforce"),
        ("actor + mask + redraw: C major + density", both, fits["C major + density"], "actor", "enforce"),
    ):
        n = args.reject_n if how == "verify" else args.n
        tokens, report = generate(
            rules,
            model,
            n,
            fitted,
            method=method,
            seed=1,
            temperature=args.temperature,
            enforce=how != "raw",
            mask=how == "enforce",
            max_decodes=2000 * n,
        )
        rows.append(
            (
                name,
                rules,
                tokens,
                report["mean_latent_shift"],
                report.get("spread", float("nan")),
                report["seconds"],
                report["interventions_per_melody"] if how == "enforce" else None,
            )
        )

    print(
        f"\n{args.n} melodies per row ({args.reject_n} for rejection sampling: it keeps only those that satisfy), "
        f"decoded at temperature {args.temperature:g}; rows '+ mask + redraw' are what melody-lc hands over"
    )
    print(
        "| row | C major | reward | density | reward | both | latent shift | spread | mask/melody | "
        "ms per melody satisfying its row's rules |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    per_ok = {}
    for name, target, tokens, shift, spread, seconds, mask in rows:
        sat, rew = both.satisfied(tokens), both.rewards(tokens)
        all_ok = sat.all(1)
        per = seconds / max(int(target.satisfied(tokens).all(1).sum()), 1)
        per_ok[name] = per
        print(
            f"| {name} | {sat[:, 0].mean():.1%} | {rew[:, 0].mean():.3f} | {sat[:, 1].mean():.1%} | {rew[:, 1].mean():.3f} "
            f"| {all_ok.mean():.1%} | {float(np.mean(shift)):.2f} | {spread:.2f} | "
            f"{'—' if mask is None else f'{mask:.2f}'} | {per * 1000:.1f} |"
        )
    ratio = per_ok["rejection: C major + density"] / per_ok["actor: C major + density"]
    print(f"\nactor vs rejection sampling, time per melody satisfying C major + density: {ratio:.0f}x faster")
    print("for the scale of latent shifts: python benchmarks/latent_scale.py")


if __name__ == "__main__":
    main()
