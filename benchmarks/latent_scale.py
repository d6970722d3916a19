"""How far apart things lie in the melody VAE's latent space: the yardstick for latent shifts.

    python benchmarks/latent_scale.py [--model DIR] [--data DIR] [-n 512]

Prints mean Euclidean distances between: two prior samples; the posterior means of two random
test windows; a test window's posterior mean and that of the same window transposed by k semitones.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from melody_lc.melody.dataset import MelodyDataset
from melody_lc.melody.train import load_model


def main() -> None:
    from melody_lc.cli.data import default_corpus_out
    from melody_lc.cli.model import default_model_dir
    from melody_lc.melody.sources import DEFAULT_COLLECTIONS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(default_model_dir()))
    ap.add_argument("--data", default=str(default_corpus_out(list(DEFAULT_COLLECTIONS))))
    ap.add_argument("-n", type=int, default=512)
    args = ap.parse_args()
    model, _ = load_model(args.model)
    windows = MelodyDataset(args.data).windows("test")[: args.n].astype(np.int64)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2 * args.n, model.config.z_size, generator=g)
    print(
        f"two prior samples: {float((z[::2] - z[1::2]).norm(dim=-1).mean()):.1f} apart (norm {float(z.norm(dim=-1).mean()):.1f})"
    )
    with torch.no_grad():
        mu, sigma = model.encode(torch.from_numpy(windows))
        other = mu[torch.randperm(len(mu), generator=g)]  # random pairs: neighbouring windows share a tune
        print(
            f"posterior means of two test windows: {float((mu - other).norm(dim=-1).mean()):.1f} apart "
            f"(norm {float(mu.norm(dim=-1).mean()):.1f}); a posterior sample lies "
            f"{float((sigma * torch.randn(sigma.shape, generator=g)).norm(dim=-1).mean()):.1f} from its mean"
        )
        for k in (1, 2, 5, 7):
            t = windows.copy()
            notes = t < 128
            t[notes] = np.clip(t[notes] + k, 0, 127)
            mu_k, _ = model.encode(torch.from_numpy(t))
            print(
                f"the same window transposed up {k} semitone{'s' if k > 1 else ''}: {float((mu_k - mu).norm(dim=-1).mean()):.1f} apart"
            )


if __name__ == "__main__":
    main()
