"""Teach by example: how much nearer to a composer's own tunes `like:` brings the melodies (and
`unlike:` takes them away), in the model's latent space and in musical features.

    python benchmarks/like_table.py [--rules rules/like_my_tunes.rules ...] [-n 256] [--model DIR]

For each rules file (default: rules/like_my_tunes.rules, and the same file with `unlike:` for
`like:`), with its fit (shipped, cached, or fitted now from the statistics shipped beside the
model), three rows: the prior's melodies and the actor's as the decoder writes them (no mask, no
redraws), and what `melody-lc generate` delivers. Columns: the share meeting the like/unlike rule
and every rule, the mean latent distance to the nearest example window (RMS over dimensions of
the posterior means; the rule's threshold, the median for the model's own melodies, is printed),
and the feature overlap with the examples (notes per bar, pitch range, intervals, in-key share:
the mean of the histogram overlaps, 1 = the same distributions).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from enforce_table import fit_for

from melody_lc.constrain import FIT_TEMPERATURE, decode_checked, generate, load_fit_stats
from melody_lc.melody.evaluate import feature_overlap
from melody_lc.melody.hardware import describe_hardware, matmul_gflops
from melody_lc.melody.train import load_model
from melody_lc.rules import load_rules
from melody_lc.rules.examples import bind_examples, example_rules


def rows(rules, model, fitted, n: int) -> list[tuple[str, np.ndarray]]:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, model.config.z_size, generator=g)
    with torch.no_grad():
        moved = fitted.actor(z, torch.zeros(n, 0))
    out = []
    for name, latents in (("prior", z), ("actor", moved)):
        out.append((name, decode_checked(rules, model, latents, None, FIT_TEMPERATURE, g, mask=False).tokens))
    tokens, _ = generate(rules, model, n, fitted, seed=1, temperature=FIT_TEMPERATURE)
    out.append(("delivered", tokens))
    return out


def main() -> None:
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.cli.model import default_model_dir
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--data", default=str(default_corpus_out(list(DEFAULT_COLLECTIONS))))
    ap.add_argument("--rules", nargs="+", default=["rules/like_my_tunes.rules"])
    ap.add_argument("-n", type=int, default=256, help="melodies per row")
    args = ap.parse_args()
    print(f"{describe_hardware()}; float32 matmul {matmul_gflops():.0f} GFLOP/s; torch {torch.__version__}")
    model, _ = load_model(args.model)
    stats = load_fit_stats(args.model, model)
    files = []
    for f in args.rules:
        files.append(Path(f))
        text = Path(f).read_text()
        if "\nlike:" in "\n" + text:  # the same examples, the other way
            flipped = Path(f).parent / f".{Path(f).stem}_unlike.rules"  # beside it: the same relative paths
            flipped.write_text("\n".join("un" + x if x.startswith("like:") else x for x in text.splitlines()))
            files.append(flipped)
    try:
        print(
            f"{args.n} melodies per row, temperature {FIT_TEMPERATURE:g}\n"
            f"{'rules':<34} {'row':<10} {'meets like/unlike':>17} {'all rules':>9} {'distance':>8} "
            f"{'overlap with examples':>21}"
        )
        for f in files:
            rules = load_rules(f)
            bind_examples(rules, model)
            (rule,) = example_rules(rules)
            k = rules.rules.index(rule)
            ex = rule.params["examples"]
            fitted = fit_for(rules, model, stats, args.data)
            name = f.name.lstrip(".")
            for row, tokens in rows(rules, model, fitted, args.n):
                sat = rules.satisfied(tokens)
                print(
                    f"{name:<34} {row:<10} {sat[:, k].mean():>17.1%} {sat.all(1).mean():>9.1%} "
                    f"{ex.distance(tokens).mean():>8.3f} {feature_overlap(tokens, ex.tokens)['mean']:>21.3f}"
                )
            print(f"{name:<34} threshold (median distance of the model's own melodies): {ex.tau:.3f}")
    finally:
        for f in files:
            if f.name.startswith("."):
                f.unlink()


if __name__ == "__main__":
    main()
