"""The paper's image table (Engel et al. 2018, table 1 style) for a melody-lc image model, in one run.

    python benchmarks/image_table.py --dataset mnist --data DIR --model VAE_DIR --classifier CLF_DIR \\
        --fit FIT_DIR --fit-no-distance FIT0_DIR [--fit-gated GATED_DIR] [-n 1000]
    python benchmarks/image_table.py --digits      # all of it from scikit-learn's real digits (30 min)

``--digits`` builds everything first, in melody-lc's cache (each step kept, so a rerun only makes
what is missing): scikit-learn's copy of the UCI handwritten digits in MNIST's layout
(``make_digits_idx.py``), an image VAE (``image train --dataset mnist --steps 6000``), the
classifier (``image classifier --steps 3000``), and three fits (defaults, ``--lambda-dist 0`` and
``--gated``). Those are real handwriting but not MNIST, which cannot be fetched here.

Rows: the test data itself, prior samples, the conditional actor with the distance penalty, the
actor without it, the paper's gated actor, and gradient search on the critics. Each generated row asks for attribute rows
drawn from the test set's labels; the separately trained pixel-space classifier judges the images.
Columns: accuracy of the requested attributes (MNIST: the share classified as the requested digit;
CelebA: per-attribute accuracy averaged over the attributes), the mean latent shift, and the
spread: among outputs asked for the same attributes, their mean distance over that of their prior
inputs (1 keeps the prior's variety; near 0, every output for a request is nearly the same image).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from melody_lc.engine import gradient_search
from melody_lc.engine.labelled import attribute_cost
from melody_lc.image.data import load_images
from melody_lc.image.latent import encode_all, load_fit
from melody_lc.image.train import load_classifier, load_vae, predict


def accuracy(dataset: str, logits: torch.Tensor, wanted: np.ndarray) -> float:
    if dataset == "mnist":
        return float((logits.argmax(1).numpy() == wanted.argmax(1)).mean())
    return float(((logits > 0).float().numpy() == wanted).mean())


def build_digits(args: argparse.Namespace) -> None:
    """Makes (or finds, from an earlier run) the digits, the VAE, the classifier and the three fits."""
    from melody_lc.paths import cache_dir

    work = cache_dir() / "benchmarks" / "image-digits"
    data, model = work / "data", work / "vae"
    fits = {"fit": [], "fit-no-distance": ["--lambda-dist", "0"], "fit-gated": ["--gated"]}
    steps = [
        (data, [sys.executable, str(Path(__file__).with_name("make_digits_idx.py")), str(data)]),
        (model, ["image", "train", "--dataset", "mnist", "--data", str(data), "--steps", "6000", "--out", str(model)]),
        (work / "classifier", ["image", "classifier", "--dataset", "mnist", "--data", str(data), "--steps", "3000"]),
    ] + [
        (work / name, ["image", "fit", "--model", str(model), "--data", str(data), *extra])
        for name, extra in fits.items()
    ]
    for out, cmd in steps:
        if (out / ".done").exists():
            continue
        if cmd[0] == "image":
            cmd = [sys.executable, "-m", "melody_lc", *cmd, *([] if "--out" in cmd else ["--out", str(out)]), "--quiet"]
            if out == model and out.exists():
                cmd.append("--resume")
        print("building:", " ".join(Path(c).name if c.startswith("/") else c for c in cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=sys.stderr)  # the figures alone go to stdout
        (out / ".done").touch()
    args.dataset, args.data, args.model, args.classifier = "mnist", str(data), str(model), str(work / "classifier")
    args.fit, args.fit_no_distance, args.fit_gated = (str(work / name) for name in fits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--digits", action="store_true", help="build and measure on scikit-learn's real digits")
    ap.add_argument("--dataset", choices=["mnist", "celeba"])
    ap.add_argument("--data")
    ap.add_argument("--model")
    ap.add_argument("--classifier")
    ap.add_argument("--fit", help="fit with the distance penalty")
    ap.add_argument("--fit-no-distance", help="fit without it (image fit --lambda-dist 0)")
    ap.add_argument("--fit-gated", help="fit with the paper's gated actor (image fit --gated)")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.digits:
        build_digits(args)
    missing = [f"--{k}" for k in ("dataset", "data", "model", "classifier", "fit") if getattr(args, k) is None]
    if missing:
        ap.error(f"give --digits, or all of {', '.join(missing)}")

    model, _ = load_vae(args.model)
    clf, cmeta = load_classifier(args.classifier)
    fits = {"actor (distance penalty)": load_fit(args.fit)}
    if args.fit_no_distance:
        fits["actor (no distance penalty)"] = load_fit(args.fit_no_distance)
    if args.fit_gated:
        fits["paper's gated actor (distance penalty)"] = load_fit(args.fit_gated)
    names = fits["actor (distance penalty)"].names
    if cmeta["attributes"] != names:
        raise SystemExit(f"the classifier judges {cmeta['attributes']}, the fit constrains {names}")
    test = load_images(args.dataset, args.data, "test", attributes=names)
    rng = np.random.default_rng(args.seed)
    pick = rng.integers(0, len(test), args.n)
    wanted = test.attributes[pick]
    y = torch.from_numpy(wanted)
    g = torch.Generator().manual_seed(args.seed)
    z = torch.randn(args.n, model.z_size, generator=g)

    def spread(z2: torch.Tensor) -> float:
        """Among outputs asked for the same attributes, their mean distance over that of their prior
        inputs, averaged over the most common requests: near 0, every such output is the same image."""
        keys = [tuple(r) for r in wanted.astype(int).tolist()]
        common = sorted(set(keys), key=keys.count, reverse=True)[:10]
        ratios = []
        for k in common:
            idx = torch.tensor([i for i, r in enumerate(keys) if r == k][:200])
            if len(idx) > 2:
                ratios.append(float(torch.pdist(z2[idx]).mean() / torch.pdist(z[idx]).mean()))
        return float(np.mean(ratios))

    rows = [
        (
            "test data",
            accuracy(args.dataset, predict(clf, test.images), test.attributes),
            float("nan"),
            float("nan"),
            0.0,
        )
    ]
    with torch.no_grad():
        t = time.perf_counter()
        imgs = model.decode(z)
        rows.append(("prior", accuracy(args.dataset, predict(clf, imgs), wanted), 0.0, 1.0, time.perf_counter() - t))
        for name, fit in fits.items():
            t = time.perf_counter()
            z2 = fit.actor(z, y)
            imgs = model.decode(z2)
            rows.append(
                (
                    name,
                    accuracy(args.dataset, predict(clf, imgs), wanted),
                    float((z2 - z).norm(dim=-1).mean()),
                    spread(z2),
                    time.perf_counter() - t,
                )
            )
    best = fits["actor (distance penalty)"]
    t = time.perf_counter()
    z2, _, _ = gradient_search(
        z, attribute_cost(best.realism, best.attributes, torch.arange(len(names)), y), best.sigma_bar, steps=300
    )
    with torch.no_grad():
        imgs = model.decode(z2)
    rows.append(
        (
            "gradient search (distance penalty)",
            accuracy(args.dataset, predict(clf, imgs), wanted),
            float((z2 - z).norm(dim=-1).mean()),
            spread(z2),
            time.perf_counter() - t,
        )
    )
    mu, sigma = encode_all(model, test.images[:500])
    scale = float(torch.pdist(mu[:500]).mean())
    source = "scikit-learn's UCI digits in MNIST's layout (not MNIST)" if args.digits else args.dataset
    print(f"{source}: {len(test)} test images, {args.n} generated per row, attributes: {', '.join(names)}")
    print("| row | attribute accuracy (classifier) | mean latent shift | spread | seconds |")
    print("|---|---:|---:|---:|---:|")
    for name, acc, shift, spr, sec in rows:
        fmt = lambda v: "" if np.isnan(v) else f"{v:.2f}"  # noqa: E731
        print(f"| {name} | {acc:.1%} | {fmt(shift)} | {fmt(spr)} | {sec:.2f} |")
    print(
        f"scale: two prior samples lie {float(torch.pdist(z[:500]).mean()):.2f} apart, two test images' "
        f"encodings {scale:.2f}; the encoder's mean posterior scale is {float(sigma.mean()):.3f}"
    )


if __name__ == "__main__":
    main()
