"""Where the silence of a rests rule falls: paced by four-bar phrase (the mask now) or left to the
melody's last steps (the mask before), on the same latents.

    python benchmarks/rest_pacing.py [-n 256] [--rules FILE ...]

For every rules file with a `rests:` lower bound (default: those in rules/ and benchmarks/rules/)
and its fit (the shipped one, a cached one, or fitted now), prior latents and the actor's moves of
them are decoded under the rules' constraints at the fit temperature, once with the silence paced
(``constraints.Silence``) and once without. Printed per row: the share obeying every rule, the
mask's interventions per melody, the silent share of all steps, of bars 1-12 and of bars 13-16,
and the silent share of each bar (in %). The actor alone (no mask) is shown for reference: what the
decoder writes by itself at the actor's latents.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import numpy as np
import torch

from melody_lc.constrain import FIT_TEMPERATURE, load_fit_stats
from melody_lc.melody.encoding import BAR_STEPS
from melody_lc.melody.hardware import describe_hardware, use_bf16
from melody_lc.melody.metrics import sounding_pitch
from melody_lc.melody.train import load_model
from melody_lc.rules import load_rules
from melody_lc.rules.constraints import Silence
from melody_lc.rules.plan import load_plan
from melody_lc.rules.syntax import strip_comment


def decode(rules, model, z, cond, paced: bool | None, seed: int = 2):
    """Tokens and interventions per melody; ``paced`` None: no mask at all."""
    g = torch.Generator().manual_seed(seed)
    bf16 = use_bf16("auto", z.device)
    if paced is None:
        return model.decode(z, FIT_TEMPERATURE, g, bf16).numpy(), None
    steer = rules.steer(cond, len(z))
    for _, c in steer.constraints:
        inner = getattr(c, "inner", c)  # a scoped rule's own constraint
        if isinstance(inner, Silence):
            inner.paced = paced
    tokens = model.decode(z, FIT_TEMPERATURE, g, bf16, steer=steer).numpy()
    return tokens, float(steer.stats.interventions.float().mean())


def main() -> None:
    from enforce_table import fit_for

    from melody_lc.cli.data import default_corpus_out
    from melody_lc.cli.model import default_model_dir
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=256, help="melodies per row")
    ap.add_argument("--rules", nargs="+", help="rules files (default: those with a rests rule)")
    args = ap.parse_args()
    files = args.rules or [
        f
        for f in sorted(glob.glob("rules/*.rules")) + sorted(glob.glob("benchmarks/rules/*.rules"))
        if not load_plan(f).sectioned  # a plan's sections: benchmarks/plan_morph.py
        and any(r.kind.name == "rests" and r.params.get("low") for r in load_rules(f).rules)
    ]
    print(f"{describe_hardware()}; torch {torch.__version__}")
    model, _ = load_model(default_model_dir())
    stats = load_fit_stats(default_model_dir(), model)
    data = str(default_corpus_out(list(DEFAULT_COLLECTIONS)))
    print(f"\n{args.n} melodies per row, temperature {FIT_TEMPERATURE:g}; silent share in %")
    for path in files:
        rules = load_rules(path)
        fitted = fit_for(rules, model, stats, data)
        rng = np.random.default_rng(1)
        cond = rules.sample_conditions(args.n, rng) if rules.open else None
        cvec = torch.from_numpy(rules.condition_vector(cond)) if cond else torch.zeros(args.n, 0)
        z = torch.randn(args.n, model.config.z_size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            moved = fitted.actor(z, cvec)
        print(f"\n{Path(path).stem}: " + " / ".join(strip_comment(r.text).strip() for r in rules.rules))
        print("| row | all rules | mask/melody | silent | bars 1-12 | bars 13-16 | each bar |")
        print("|---|---:|---:|---:|---:|---:|---|")
        for row, latents, paced in (
            ("prior + mask, paced", z, True),
            ("prior + mask, at the end", z, False),
            ("actor alone", moved, None),
            ("actor + mask, paced", moved, True),
            ("actor + mask, at the end", moved, False),
        ):
            tokens, mask = decode(rules, model, latents, cond, paced)
            ok = rules.satisfied(tokens, cond).all(1).mean()
            silent = sounding_pitch(tokens) < 0  # (N, 256): no note sounds, as the rests rule counts
            bars = silent.reshape(len(tokens), -1, BAR_STEPS).mean((0, 2)) * 100
            print(
                f"| {row} | {ok:.1%} | {'—' if mask is None else f'{mask:.1f}'} | {silent.mean() * 100:.0f} | "
                f"{bars[:12].mean():.0f} | {bars[12:].mean():.0f} | {' '.join(f'{b:.0f}' for b in bars)} |"
            )


if __name__ == "__main__":
    main()
