"""How well a model's latent space serves the rules: the same files fitted on several models.

    python benchmarks/latent_fitness.py [--model DIR ...] [--rules FILE ...] [--lambda-dist L ...]
        [--stages S ...] [--temperatures T ...] [-n 512] [--by-value]

A model can reconstruct tunes well and still serve the latent constraints badly: the actor can only
move z to where the decoder writes what the rules ask by itself. For each model (default: the
shipped one, the reference, and the long parallel run in runs/parallel) and each rules file
(default: the shipped examples with an actor target), the rules are fitted (or the fit is taken
from the caches) with each distance penalty ``lambda_dist`` and each most number of stages (a
further stage fits new critics and an actor on the moves of the stages before while the actor alone
falls short of ``FitConfig.stage_target``; engine/fit.py), and n prior latents and the actor's moves
of them are decoded at each temperature (0: argmax), with and without the rules' masks.

Columns: the stages the fit kept, its time and the graded reward of the actor's melodies at its
last round; the share of the actor's own melodies obeying every rule (the actor alone); how many
notes per melody the mask overrules, for prior latents and for the actor's, and their ratio (issue
15's target: at most 0.20); the spread of the actor's latents (1: the prior's variety kept); the
rule the actor alone breaks most often, and in what share of its melodies. With ``--by-value``, a
second table holds each open parameter (``density: >= ?``) at each of its values in turn: where a
conditional actor falls short.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from enforce_table import ACTOR_TARGET  # the files with an actor target (issue 15)

from melody_lc.constrain import decode_checked, fit_rules, load_fit_stats, shipped_fits_dir
from melody_lc.engine import FitConfig, latent_spread
from melody_lc.melody.hardware import describe_hardware, matmul_gflops
from melody_lc.melody.train import load_model
from melody_lc.paths import cache_dir
from melody_lc.rules import load_rules


def measure(rules, model, fitted, n: int, temperature: float, fixed: dict | None = None) -> dict:
    """The figures of one row; ``fixed``: open parameters held at one value (the rest drawn)."""
    g = torch.Generator().manual_seed(1)
    cond = rules.sample_conditions(n, np.random.default_rng(1)) if rules.open else None
    for name, value in (fixed or {}).items():
        cond[name] = np.full(n, value, dtype=cond[name].dtype)
    cvec = torch.from_numpy(rules.condition_vector(cond)) if cond else torch.zeros(n, 0)
    z = torch.randn(n, model.config.z_size, generator=g)
    with torch.no_grad():
        moved = fitted.actor(z, cvec)
    out = {"spread": latent_spread(z, moved)}
    for name, latents in (("prior", z), ("actor", moved)):
        for masked in (False, True):
            c = decode_checked(rules, model, latents, cond, temperature, torch.Generator().manual_seed(2), mask=masked)
            out[name, masked] = c.interventions.mean() if masked else c.ok.mean()
            if name == "actor" and not masked:  # the rule the actor alone fails most often
                rates = c.failed.mean(0)
                worst = int(rates.argmax())
                out["worst"] = f"{rules.names[worst]} {rates[worst]:.0%}"
    return out


def parameter_values(spec: tuple) -> list:
    """The values of an open parameter to hold in turn: every category, or the whole numbers of a
    range (a count such as notes per bar is whole: 7.5 asks as much as 8)."""
    if spec[0] == "category":
        return list(range(spec[1]))
    lo, hi = int(np.ceil(spec[1])), int(np.floor(spec[2]))
    return list(range(lo, hi + 1)) if hi - lo <= 12 else list(np.linspace(spec[1], spec[2], 8))


def main() -> None:
    from melody_lc.cli.model import default_model_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=[str(default_model_dir()), "runs/parallel"])
    ap.add_argument("--rules", nargs="+", default=[f"rules/{name}.rules" for name in ACTOR_TARGET])
    ap.add_argument("--lambda-dist", nargs="+", type=float, default=[FitConfig().lambda_dist])
    ap.add_argument("--stages", nargs="+", type=int, default=[FitConfig().stages])
    ap.add_argument("--temperatures", nargs="+", type=float, default=[0.0, 0.5])
    ap.add_argument("-n", type=int, default=512)
    ap.add_argument(
        "--by-value",
        action="store_true",
        help="for files with open parameters, also the actor alone at each value of each parameter",
    )
    args = ap.parse_args()
    print(
        f"{describe_hardware()}; float32 matmul {matmul_gflops():.0f} GFLOP/s; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {args.n} latents per row"
    )
    print(
        "\n| model | rules | lambda_dist | stages | fit s | fit's reward | T | actor alone "
        "| mask/melody: prior | actor | actor/prior | spread | actor alone fails most |"
        "\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    by_value = []  # rows of the second table, printed after the first
    for model_dir in args.model:
        model, meta = load_model(model_dir)
        stats = load_fit_stats(model_dir, model)
        label = f"{Path(model_dir).name} ({model.config.decoder}, {meta.get('steps')} steps)"
        for path in args.rules:
            rules = load_rules(path)
            for lam, stages in [(lam, stages) for lam in args.lambda_dist for stages in args.stages]:
                t = time.perf_counter()
                fitted = fit_rules(
                    rules,
                    model,
                    stats,
                    replace(FitConfig(), lambda_dist=lam, stages=stages),
                    cache_dir=cache_dir() / "fits",
                    search=(shipped_fits_dir(),),
                )
                took = fitted.meta.get("seconds", time.perf_counter() - t)
                kept = fitted.meta.get("stages", 1) - 1  # the stage the actor's last part comes from
                reward = next(
                    (
                        h["mean_reward"]
                        for h in reversed(fitted.meta["history"])
                        if "mean_reward" in h and h.get("stage", 0) == kept
                    ),
                    None,
                )
                for temperature in args.temperatures:
                    m = measure(rules, model, fitted, args.n, temperature)
                    print(
                        f"| {label} | {Path(path).stem} | {lam:g} | {fitted.meta.get('stages', 1)} of {stages} | "
                        f"{took:.0f} | {'—' if reward is None else format(reward, '.2f')} | {temperature:g} | "
                        f"{m['actor', False]:.1%} | {m['prior', True]:.1f} | {m['actor', True]:.1f} | "
                        f"{m['actor', True] / max(m['prior', True], 1e-9):.2f} | {m['spread']:.2f} | {m['worst']} |",
                        flush=True,
                    )
                    for name, spec in rules.open.items() if args.by_value else ():
                        for value in parameter_values(spec):
                            v = measure(rules, model, fitted, args.n, temperature, {name: value})
                            by_value.append(
                                f"| {label} | {Path(path).stem} | {stages} | {name} = {value:g} | {temperature:g} "
                                f"| {v['actor', False]:.1%} | {v['worst']} |"
                            )
    if by_value:
        print(
            "\nthe actor alone with one open parameter held at each value (the others drawn)"
            "\n| model | rules | stages | parameter | T | actor alone | actor alone fails most |"
            "\n|---|---|---:|---|---:|---:|---|"
        )
        print("\n".join(by_value))


if __name__ == "__main__":
    main()
