"""The paper's zero-shot melody table (Engel et al. 2018, table 4), on a melody-lc model, in one run.

    python benchmarks/paper_table.py [--model DIR] [--data DIR] [-n 1024]

Rows: prior samples; the actor fitted for C major; the actor fitted for C major + density;
gradient search on the C major + density critic; rejection sampling from the prior for C major +
density. Columns: satisfaction and mean reward per constraint, mean latent shift, and wall time
per satisfying melody. Melodies are decoded by sampling (temperature 1), as in the paper.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from melody_lc.constrain import fit_rules, generate
from melody_lc.engine import FitConfig
from melody_lc.melody.dataset import MelodyDataset
from melody_lc.melody.train import load_model
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
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()

    model, _ = load_model(args.model)
    windows = MelodyDataset(args.data).windows("train")
    both = parse_rules(C_MAJOR_DENSE, "c_major_dense")
    key_only = parse_rules(C_MAJOR, "c_major")
    cfg = FitConfig(rounds=args.rounds)
    t = time.perf_counter()
    fit_key = fit_rules(key_only, model, windows, cfg)
    fit_key_s = time.perf_counter() - t
    t = time.perf_counter()
    fit_both = fit_rules(both, model, windows, cfg)
    fit_both_s = time.perf_counter() - t
    print(f"fit C major: {fit_key_s:.0f} s; fit C major + density: {fit_both_s:.0f} s (2 CPU threads: {torch.get_num_threads()})")

    rows = []
    g = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    prior = model.sample(args.n, 1.0, g).numpy()
    rows.append(("prior", prior, np.zeros(args.n), time.perf_counter() - t))
    for name, rules, fitted, method in (("actor: C major", key_only, fit_key, "actor"),
                                        ("actor: C major + density", both, fit_both, "actor"),
                                        ("gradient search: C major + density", both, fit_both, "gd"),
                                        ("rejection: C major + density", both, None, "reject")):
        tokens, report = generate(rules, model, args.n, fitted, method=method, seed=1, max_tries=400)
        rows.append((name, tokens, report["mean_latent_shift"], report["seconds"]))

    print(f"\n{'row':<36} {'C major':>8} {'reward':>7} {'density':>8} {'reward':>7} {'both':>6} {'shift':>6} {'s / satisfying':>15}")
    for name, tokens, shift, seconds in rows:
        sat, rew = both.satisfied(tokens), both.rewards(tokens)
        all_ok = sat.all(1)
        per = seconds / max(int(all_ok.sum()), 1)
        print(f"{name:<36} {sat[:, 0].mean():>8.1%} {rew[:, 0].mean():>7.3f} {sat[:, 1].mean():>8.1%} {rew[:, 1].mean():>7.3f} "
              f"{all_ok.mean():>6.1%} {float(np.mean(shift)):>6.2f} {per * 1000:>12.1f} ms")


if __name__ == "__main__":
    main()
