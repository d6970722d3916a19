"""Where the image VAEs meet the engine: fit attribute constraints, generate, transform.

    fit = fit_attributes(model, data)                              # realism + attribute critics, actor
    images, report = generate(model, fit, {"Smiling": 1, "Blond_Hair": 1}, n=64)
    new, report = transform(model, fit, image, {"Smiling": 1})     # identity-preserving (gradient search)

The same engine as the melodies (``melody_lc.engine``): the critic and actor networks, the distance
penalty, the gradient search; only the training signal differs (labelled data, not a reward).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from melody_lc import checkpoint
from melody_lc.engine import Actor, Critic, gradient_search, latent_spread
from melody_lc.engine.labelled import LabelledFit, LabelledFitConfig, LabelledProblem, attribute_cost, fit_labelled
from melody_lc.image.data import ImageDataError, ImageSet
from melody_lc.image.model import ImageVAE

FIT_KIND = "melody-lc-image-fit"


@torch.no_grad()
def encode_all(model: ImageVAE, images: np.ndarray, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    mus, sigmas = [], []
    for i in range(0, len(images), batch):
        mu, sigma = model.encode(torch.from_numpy(images[i : i + batch]))
        mus.append(mu)
        sigmas.append(sigma)
    return torch.cat(mus), torch.cat(sigmas)


class ImageFit:
    """A fitted actor and its critics for the attributes ``names``."""

    def __init__(self, fit: LabelledFit, names: list[str], meta: dict) -> None:
        self.actor, self.realism, self.attributes = fit.actor, fit.realism, fit.attributes
        self.sigma_bar, self.names, self.meta = fit.sigma_bar, list(names), meta
        self.label_rows = torch.as_tensor(
            np.asarray(meta.get("label_rows", np.zeros((1, len(names))))), dtype=torch.float32
        )

    def index(self, name: str) -> int:
        if name not in self.names:
            raise ImageDataError(f"the fit knows no attribute {name!r} (it has: {', '.join(self.names)})")
        return self.names.index(name)


def fit_attributes(
    model: ImageVAE, data: ImageSet, config: LabelledFitConfig = LabelledFitConfig(), progress=None
) -> ImageFit:
    t0 = time.perf_counter()
    mu, sigma = encode_all(model, data.images)
    problem = LabelledProblem(mu, sigma, torch.from_numpy(data.attributes))
    fit = fit_labelled(problem, config, progress)
    rows = np.unique(data.attributes, axis=0)[:4096]  # the combinations that occur, to fill unnamed attributes
    meta = {
        "attributes": data.names,
        "fit_config": asdict(config),
        "seconds": round(time.perf_counter() - t0, 1),
        "images": len(data),
        "z_size": model.z_size,
        "label_rows": rows.tolist(),
        "history": fit.history,
    }
    return ImageFit(fit, data.names, meta)


def save_fit(f: ImageFit, path: str | os.PathLike) -> Path:
    weights = {f"actor.{k}": v for k, v in f.actor.state_dict().items()}
    weights.update({f"realism.{k}": v for k, v in f.realism.state_dict().items()})
    weights.update({f"attributes.{k}": v for k, v in f.attributes.state_dict().items()})
    weights["sigma_bar"] = f.sigma_bar
    cfg = f.meta["fit_config"]
    return checkpoint.save(
        path,
        FIT_KIND,
        {
            "z_size": f.meta["z_size"],
            "attributes": f.names,
            "hidden": cfg["hidden"],
            "actor_hidden": cfg["actor_hidden"],
            "layers": cfg["layers"],
            "actor_max_step": cfg.get("actor_max_step"),
        },
        weights,
        meta=f.meta,
    )


def load_fit(path: str | os.PathLike) -> ImageFit:
    ck = checkpoint.load(path, FIT_KIND)
    c, w = ck["config"], ck["weights"]
    A = len(c["attributes"])
    actor = Actor(c["z_size"], A, c["actor_hidden"], c["layers"], c.get("actor_max_step"))
    realism = Critic(c["z_size"], 1, 0, c["hidden"], c["layers"])
    attributes = Critic(c["z_size"], A, 0, c["hidden"], c["layers"])
    for name, net in (("actor", actor), ("realism", realism), ("attributes", attributes)):
        net.load_state_dict({k[len(name) + 1 :]: v for k, v in w.items() if k.startswith(name + ".")})
    fit = LabelledFit(actor.eval(), realism.eval(), attributes.eval(), w["sigma_bar"])
    return ImageFit(fit, c["attributes"], ck["meta"])


def parse_attrs(text: str, names: list[str], signed: bool = False) -> dict[str, int]:
    """'Blond_Hair,Smiling' -> {Blond_Hair: 1, Smiling: 1}; with ``signed``, '+Smiling,-Eyeglasses'
    -> {Smiling: 1, Eyeglasses: 0}. MNIST digits may be given as '7' (digit_7)."""
    out = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        value = 1
        if part[0] in "+-":
            value, part = int(part[0] == "+"), part[1:]
        elif signed:
            raise ImageDataError(f"--attrs {text!r}: write each change as +NAME or -NAME")
        if part.isdigit() and f"digit_{part}" in names:
            part = f"digit_{part}"
        if part not in names:
            import difflib

            near = difflib.get_close_matches(part, names, n=1)
            hint = f" — did you mean {near[0]!r}?" if near else f" (there are: {', '.join(names)})"
            raise ImageDataError(f"unknown attribute {part!r}{hint}")
        out[part] = value
    if not out:
        raise ImageDataError("no attributes given")
    return out


def target_rows(fit: ImageFit, wanted: dict[str, int], n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, A): attribute rows that occur in the data, with the ``wanted`` ones set."""
    rows = fit.label_rows[torch.randint(0, len(fit.label_rows), (n,), generator=generator)].clone()
    for name, v in wanted.items():
        j = fit.index(name)
        rows[:, j] = float(v)
        if name.startswith("digit_") and v:  # one digit at a time
            rows[:, [k for k, nm in enumerate(fit.names) if nm.startswith("digit_") and k != j]] = 0.0
    return rows


@torch.no_grad()
def generate(
    model: ImageVAE,
    fit: ImageFit | None,
    wanted: dict[str, int],
    n: int,
    seed: int = 0,
    method: str = "actor",
    steps: int = 300,
) -> tuple[np.ndarray, dict]:
    """n images with the ``wanted`` attributes: through the conditional actor, by gradient search on
    the critics, or from the prior (method 'prior', for comparison)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.z_size, generator=g)
    t0 = time.perf_counter()
    if method == "prior":
        z2 = z
    elif method == "actor":
        z2 = fit.actor(z, target_rows(fit, wanted, n, g))
    elif method == "gd":
        idx = torch.tensor([fit.index(k) for k in wanted])
        targets = torch.tensor([[float(v) for v in wanted.values()]]).expand(n, -1)
        with torch.enable_grad():
            z2, _, _ = gradient_search(
                z, attribute_cost(fit.realism, fit.attributes, idx, targets), fit.sigma_bar, steps=steps
            )
    else:
        raise ValueError(f"method must be actor, gd or prior, not {method!r}")
    images = model.decode(z2).numpy()
    return images, {
        "method": method,
        "images": n,
        "wanted": wanted,
        "seconds": round(time.perf_counter() - t0, 3),
        "mean_latent_shift": float((z2 - z).norm(dim=-1).mean()),
        "spread": latent_spread(z, z2) if n > 2 else 1.0,
    }


def transform(
    model: ImageVAE,
    fit: ImageFit,
    image: np.ndarray,
    changes: dict[str, int],
    lambda_dist: float = 0.1,
    steps: int = 300,
) -> tuple[np.ndarray, dict]:
    """The identity-preserving transformation: encode, gradient search on the realism critic and the
    changed attributes' critic with the distance penalty, decode."""
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)[None])
    with torch.no_grad():
        mu, _ = model.encode(x)
        before = torch.sigmoid(fit.attributes(mu))[0]
    idx = torch.tensor([fit.index(k) for k in changes])
    targets = torch.tensor([[float(v) for v in changes.values()]])
    z2, done, taken = gradient_search(
        mu,
        attribute_cost(fit.realism, fit.attributes, idx, targets),
        fit.sigma_bar,
        lambda_dist=lambda_dist,
        steps=steps,
    )
    with torch.no_grad():
        out = model.decode(z2).numpy()[0]
        after = torch.sigmoid(fit.attributes(z2))[0]
    report = {
        "changes": changes,
        "critics_satisfied": bool(done.all()),
        "steps": taken,
        "latent_shift": float((z2 - mu).norm()),
        "attributes_before": {k: round(float(before[fit.index(k)]), 3) for k in changes},
        "attributes_after": {k: round(float(after[fit.index(k)]), 3) for k in changes},
    }
    return out, report
