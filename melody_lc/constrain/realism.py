"""The model's realism actor: prior latents moved toward where real tunes encode (the paper's
realism constraint alone, :func:`melody_lc.engine.fit_realism`), so that ``sample`` writes melodies
closer to the data. Kept beside the model's weights (``realism.safetensors`` and ``realism.json``)
and fitted from its fit statistics (``fit-stats``) in about a minute on 2 cores, no dataset needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from melody_lc import checkpoint
from melody_lc.choices import REALISM_STEPS
from melody_lc.constrain.fitting import load_fit_stats, model_fingerprint
from melody_lc.engine import Actor, FitConfig, fit_realism
from melody_lc.errors import UserError
from melody_lc.fileio import write_json
from melody_lc.melody.model import MelodyVAE

REALISM = "realism"  # beside a model's weights


def fit_model_realism(
    model_dir: str | os.PathLike,
    model: MelodyVAE,
    config: FitConfig = FitConfig(),
    steps: int = REALISM_STEPS,
) -> dict:
    """Fit the realism actor from the fit statistics beside the model and store it there; returns
    its last history entry (how real the critic finds prior samples, the actor's and the data's)."""
    stats = load_fit_stats(model_dir, model)
    if stats is None:
        raise UserError(f"{model_dir}: no fit statistics for these weights; run `melody-lc fit-stats` first")
    sigma_bar, real = stats
    res = fit_realism(real, sigma_bar, config, steps)
    d = Path(model_dir)
    checkpoint.save_tensors(d / f"{REALISM}.safetensors", res.actor.state_dict(), torch.float16)
    info = {
        "model": model_fingerprint(model),
        "actor": {
            "z_size": res.actor.z_size,
            "hidden": config.actor_hidden,
            "layers": config.layers,
            "max_step": config.actor_max_step,
        },
        "lambda_dist": config.lambda_dist,
        "steps": steps,
        "last": res.history[-1],
    }
    write_json(d / f"{REALISM}.json", info)
    return res.history[-1]


def load_realism(model_dir: str | os.PathLike, model: MelodyVAE) -> Actor | None:
    """The realism actor beside ``model``, or None (none there, or fitted for other weights)."""
    from safetensors.torch import load_file

    d = Path(model_dir)
    try:
        info = json.loads((d / f"{REALISM}.json").read_text())
        if info.get("model") != model_fingerprint(model):
            return None
        a = info["actor"]
        actor = Actor(a["z_size"], 0, a["hidden"], a["layers"], a["max_step"])
        actor.load_state_dict({k: v.float() for k, v in load_file(str(d / f"{REALISM}.safetensors")).items()})
    except (OSError, ValueError, KeyError, RuntimeError):
        return None
    return actor.eval()
