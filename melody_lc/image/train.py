"""Training the image VAEs and the pixel-space attribute classifier; their checkpoints.

    model = train_vae(data, PRESETS["mnist"], steps=5000, out="runs/mnist")   # resumable
    clf = train_classifier(data, steps=2000, out="runs/mnist-classifier")

Both save safetensors + JSON through :mod:`melody_lc.checkpoint` every few minutes, on Ctrl-C and at
the end; ``resume=True`` continues from the checkpoint in ``out`` (model, optimizer, step, RNG).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from melody_lc import checkpoint
from melody_lc.image.data import ImageSet
from melody_lc.image.model import ImageVAE, ImageVAEConfig

VAE_KIND = "melody-lc-image-vae"
CLASSIFIER_KIND = "melody-lc-image-classifier"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _train_loop(
    net: nn.Module,
    loss_fn: Callable,
    data: ImageSet,
    steps: int,
    batch_size: int,
    lr: float,
    out: str | os.PathLike | None,
    kind: str,
    config: dict,
    meta: dict,
    resume: bool,
    progress: Callable[[dict], None] | None,
    checkpoint_minutes: float = 5.0,
    seed: int = 0,
) -> nn.Module:
    device = _device()
    net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    step = 0
    if resume and out is not None and checkpoint.exists(out):
        ck = checkpoint.load(out, kind, with_state=True)
        net.load_state_dict(ck["weights"])
        st, tensors = ck["state"], ck["state_tensors"]
        opt_state = opt.state_dict()
        opt_state["state"] = {int(k.split(".")[1]): {} for k in tensors if k.startswith("opt.")}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".")
                opt_state["state"][int(i)][name] = v.to(device)
        opt.load_state_dict(opt_state)
        g.set_state(tensors["rng"])
        step = st["step"]
    images = torch.from_numpy(data.images)
    labels = torch.from_numpy(data.attributes)

    def save() -> None:
        if out is None:
            return
        tensors = {
            f"opt.{i}.{name}": v
            for i, s in opt.state_dict()["state"].items()
            for name, v in s.items()
            if torch.is_tensor(v)
        }
        tensors["rng"] = g.get_state()
        checkpoint.save(
            out,
            kind,
            config,
            net.state_dict(),
            meta={**meta, "steps": step},
            state={"step": step},
            state_tensors=tensors,
        )

    last_save = time.monotonic()
    t0 = time.perf_counter()
    try:
        net.train()
        while step < steps:
            idx = torch.randint(0, len(images), (batch_size,), generator=g)
            terms = loss_fn(images[idx].to(device), labels[idx].to(device), g)
            opt.zero_grad()
            terms["loss"].backward()
            nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            step += 1
            if progress is not None and (step % 100 == 0 or step == steps):
                progress(
                    {
                        "step": step,
                        **{k: float(v) for k, v in terms.items()},
                        "images_per_s": step * batch_size / (time.perf_counter() - t0),
                    }
                )
            if time.monotonic() - last_save > checkpoint_minutes * 60:
                save()
                last_save = time.monotonic()
    finally:  # also on Ctrl-C: the steps done so far are kept
        save()
    return net.eval().cpu()


def train_vae(
    data: ImageSet,
    config: ImageVAEConfig,
    steps: int,
    out: str | os.PathLike | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    resume: bool = False,
    meta: dict | None = None,
    progress: Callable[[dict], None] | None = None,
    seed: int = 0,
) -> ImageVAE:
    torch.manual_seed(seed)
    model = ImageVAE(config)

    def loss(x, _y, g):
        return model(x, generator=None if x.is_cuda else g)

    return _train_loop(
        model,
        loss,
        data,
        steps,
        batch_size,
        lr,
        out,
        VAE_KIND,
        config.to_dict(),
        {**(meta or {}), "attributes": data.names},
        resume,
        progress,
        seed=seed,
    )


def load_vae(path: str | os.PathLike) -> tuple[ImageVAE, dict]:
    ck = checkpoint.load(path, VAE_KIND)
    model = ImageVAE(ImageVAEConfig.from_dict(ck["config"]))
    model.load_state_dict(ck["weights"])
    return model.eval(), ck["meta"]


# -- the pixel-space attribute classifier (for evaluation only) ------------------------------------
class Classifier(nn.Module):
    """A small CNN: image -> one logit per attribute. Trained apart from everything it judges."""

    def __init__(self, image_shape: tuple[int, int, int], num_attributes: int, width: int = 32) -> None:
        super().__init__()
        c = image_shape[0]
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, num_attributes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_classifier(
    data: ImageSet,
    steps: int,
    out: str | os.PathLike | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    width: int = 32,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
    seed: int = 0,
) -> Classifier:
    torch.manual_seed(seed)
    shape = tuple(data.images.shape[1:])
    clf = Classifier(shape, len(data.names), width)

    def loss(x, y, _g):
        logits = clf(x)
        return {
            "loss": F.binary_cross_entropy_with_logits(logits, y),
            "accuracy": ((logits > 0).float() == y).float().mean().detach(),
        }

    config = {"image_shape": list(shape), "num_attributes": len(data.names), "width": width}
    return _train_loop(
        clf,
        loss,
        data,
        steps,
        batch_size,
        lr,
        out,
        CLASSIFIER_KIND,
        config,
        {"attributes": data.names},
        resume,
        progress,
        seed=seed,
    )


def load_classifier(path: str | os.PathLike) -> tuple[Classifier, dict]:
    ck = checkpoint.load(path, CLASSIFIER_KIND)
    c = ck["config"]
    clf = Classifier(tuple(c["image_shape"]), c["num_attributes"], c["width"])
    clf.load_state_dict(ck["weights"])
    return clf.eval(), ck["meta"]


@torch.no_grad()
def predict(net: Callable, images: np.ndarray | torch.Tensor, batch: int = 256) -> torch.Tensor:
    x = torch.as_tensor(images)
    return torch.cat([net(x[i : i + batch]) for i in range(0, len(x), batch)])


def save_grid(images, path: str | os.PathLike, columns: int | None = None) -> Path:
    """A PNG of images (N, C, H, W) in [0, 1], tiled in a grid with 2-pixel gaps, written atomically."""
    from PIL import Image

    from melody_lc.fileio import atomic_path

    x = np.asarray(images, dtype=np.float32)
    n, c, h, w = x.shape
    cols = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    sheet = np.ones((rows * (h + 2) + 2, cols * (w + 2) + 2, 3), dtype=np.float32)
    for k in range(n):
        r, q = divmod(k, cols)
        tile = np.repeat(x[k], 3, 0) if c == 1 else x[k]
        sheet[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + q * (w + 2) : 2 + q * (w + 2) + w] = tile.transpose(1, 2, 0)
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray((sheet.clip(0, 1) * 255).round().astype(np.uint8)).save(tmp, format="PNG")
    return path
