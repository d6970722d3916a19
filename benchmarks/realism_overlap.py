"""The realism actor: how much closer to held-out tunes `sample` writes through it.

    python benchmarks/realism_overlap.py [--model DIR] [-n 1024]

For the model's realism actor (``melody-lc fit-stats`` writes it beside the model): the feature
overlap with the test split (notes per bar, pitch range, intervals, share in the best key; 1 is
the same histograms) of n prior samples decoded as they are and of the same latents moved by the
actor, at temperature 1.0 (`evaluate`'s) and 0.5 (the fits'), with the actor's mean latent move.
Also printed: the CPU, and the time to fit the actor again from the fit statistics.
"""

from __future__ import annotations

import argparse
import time

import torch

from melody_lc.constrain import load_fit_stats
from melody_lc.constrain.realism import REALISM_STEPS, load_realism
from melody_lc.engine import FitConfig, fit_realism
from melody_lc.melody.evaluate import feature_overlap
from melody_lc.melody.hardware import describe_hardware, matmul_gflops
from melody_lc.melody.train import load_model


def main() -> None:
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.cli.model import default_model_dir
    from melody_lc.melody.dataset import MelodyDataset
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--data", default=str(default_corpus_out(list(DEFAULT_COLLECTIONS))))
    ap.add_argument("-n", type=int, default=1024)
    args = ap.parse_args()
    print(f"{describe_hardware()}; float32 matmul {matmul_gflops():.0f} GFLOP/s; torch {torch.__version__}")
    model, _ = load_model(args.model)
    actor = load_realism(args.model, model)
    if actor is None:
        raise SystemExit(f"{args.model}: no realism actor for these weights (run `melody-lc fit-stats`)")
    held = MelodyDataset(args.data).windows("test")
    z = torch.randn(256, model.config.z_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        shift = float((actor(z) - z).norm(dim=-1).mean())
    print(f"{args.n} samples against {len(held)} test windows; the actor moves a prior latent {shift:.1f} on average")
    print(f"(two prior samples lie about {float(torch.pdist(z).mean()):.1f} apart)\n")
    print("| temperature | latents | notes per bar | pitch range | intervals | in key | mean |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for T in (1.0, 0.5):
        prior = model.sample(args.n, T, torch.Generator().manual_seed(1)).numpy()
        moved = model.sample(args.n, T, torch.Generator().manual_seed(1), move=actor).numpy()
        for name, tokens in (("prior", prior), ("realism actor", moved)):
            o = feature_overlap(tokens, held)
            print(
                f"| {T:g} | {name} | {o['notes_per_bar']:.3f} | {o['pitch_range']:.3f} | {o['intervals']:.3f} | "
                f"{o['in_key_share']:.3f} | {o['mean']:.3f} |"
            )
    sigma_bar, real = load_fit_stats(args.model, model)
    t = time.perf_counter()
    fit_realism(real, sigma_bar, FitConfig(), REALISM_STEPS)
    print(
        f"\nfitting the actor again ({REALISM_STEPS} steps, from the fit statistics): {time.perf_counter() - t:.0f} s"
    )


if __name__ == "__main__":
    main()
