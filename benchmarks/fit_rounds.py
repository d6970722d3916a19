"""Why a file with a slowly learnt rule (a form's repeats) is fitted for more rounds.

    python benchmarks/fit_rounds.py [--seeds 0 1] [-n 512] [--rules FILE ...]

For each file with a rule of a kind with ``slow_fit`` (default: those in rules/ and
benchmarks/rules/) and each fit seed, two fits: with FitConfig's ``rounds`` and ``patience`` (what
every other file gets), and with its ``slow_rounds`` and ``slow_patience`` (what such a file gets).
Each actor is judged on the same n fresh prior latents, decoded under the rules' constraints at the
fit temperature: the mask's interventions per melody with the actor over those with the prior
latents themselves (issue 15's target: at most 0.20), the share the actor alone delivers obeying
every rule, the fit's best round and its seconds. Fits are cached (the user cache, then the shipped
fits), so a second run only decodes.
"""

from __future__ import annotations

import argparse
import glob
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from melody_lc.constrain import (
    FIT_TEMPERATURE,
    config_for,
    decode_checked,
    fit_rules,
    load_fit_stats,
    shipped_fits_dir,
)
from melody_lc.engine import FitConfig
from melody_lc.melody.hardware import describe_hardware, matmul_gflops
from melody_lc.melody.train import load_model
from melody_lc.paths import cache_dir
from melody_lc.rules import load_rules
from melody_lc.rules.plan import load_plan


def main() -> None:
    from melody_lc.cli.model import default_model_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="fit seeds (FitConfig.seed)")
    ap.add_argument("-n", type=int, default=512, help="fresh latents each actor is judged on")
    ap.add_argument(
        "--rules", nargs="+", help="rules files (default: every file in rules/ and benchmarks/rules/ that asks)"
    )
    args = ap.parse_args()

    print(
        f"{describe_hardware()}; float32 matmul {matmul_gflops():.0f} GFLOP/s; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    model, _ = load_model(args.model)
    stats = load_fit_stats(args.model, model)
    base = FitConfig()
    files = args.rules or [
        f
        for f in sorted(glob.glob("rules/*.rules")) + sorted(glob.glob("benchmarks/rules/*.rules"))
        if not load_plan(f).sectioned and config_for(load_rules(f), base) != base
    ]
    configs = {  # the plain settings, for a file that would get the slow ones: slow = plain
        f"{base.rounds} rounds, patience {base.patience}": replace(
            base, slow_rounds=base.rounds, slow_patience=base.patience
        ),
        f"{base.slow_rounds} rounds, patience {base.slow_patience}": base,
    }
    print(
        f"\n{args.n} fresh prior latents per actor, decoded under the rules' constraints at temperature "
        f"{FIT_TEMPERATURE:g}; seeds {', '.join(map(str, args.seeds))}"
    )
    print("| rules | fit | seed | interventions: prior -> actor | actor/prior | actor alone | best round | fit |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    means: dict[tuple[str, str], list[float]] = {}
    for path in files:
        rules, name = load_rules(path), Path(path).stem
        z = torch.randn(args.n, model.config.z_size, generator=torch.Generator().manual_seed(1))
        prior = decode_checked(rules, model, z, None, FIT_TEMPERATURE, torch.Generator().manual_seed(2)).interventions
        for label, config in configs.items():
            for seed in args.seeds:
                fitted = fit_rules(
                    rules,
                    model,
                    stats,
                    replace(config, seed=seed),
                    cache_dir=cache_dir() / "fits",
                    search=(shipped_fits_dir(),),
                )
                with torch.no_grad():
                    moved = fitted.actor(z, torch.zeros(args.n, 0))
                g = torch.Generator().manual_seed(2)
                actor = decode_checked(rules, model, moved, None, FIT_TEMPERATURE, g).interventions
                alone = decode_checked(rules, model, moved, None, FIT_TEMPERATURE, g, mask=False).ok
                ratio = actor.mean() / prior.mean()
                means.setdefault((name, label), []).append(ratio)
                print(
                    f"| {name} | {label} | {seed} | {prior.mean():.1f} -> {actor.mean():.1f} | {ratio:.3f} | "
                    f"{alone.mean():.1%} | {fitted.meta['best_round']} | {fitted.meta['seconds']:.0f} s |"
                )
    print("\nmean actor/prior over the seeds (target <= 0.20)")
    for (name, label), ratios in means.items():
        print(f"  {name}, {label}: {np.mean(ratios):.3f}")


if __name__ == "__main__":
    main()
