"""The paper's image VAEs: an MLP VAE for MNIST and a convolutional VAE for CelebA.

MNIST (``kind="mlp"``): x (1, 28, 28) -> MLP -> (mu, softplus scale) of z; z -> MLP -> sigmoid
pixel means; Bernoulli likelihood (binary cross-entropy).

CelebA (``kind="conv"``): x (3, 64, 64) -> conv(256, 5, /2) -> conv(512, 5, /2) -> conv(1024, 3, /2)
-> conv(2048, 3, /2) -> (4 x 4 x 2048) -> linear -> (mu, softplus scale), 1024 each; z -> linear ->
4 x 4 x 2048 -> transposed convs (1024, 512, 256, 3), each /2 up -> sigmoid pixel means; Gaussian
likelihood with a fixed sigma_x (the paper contrasts 0.1, sharp and less diverse, with 1).

The config rides in every checkpoint, so a model rebuilds from its file alone. ``channels`` scales
the conv widths: the ``paper`` presets are the paper's sizes; the others are sized for a CPU.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ImageVAEConfig:
    kind: str = "mlp"  # mlp | conv
    image_shape: tuple[int, int, int] = (1, 28, 28)
    z_size: int = 64
    hidden: tuple[int, ...] = (1024, 1024)  # mlp: hidden widths
    channels: tuple[int, ...] = (256, 512, 1024, 2048)  # conv: encoder widths (the decoder mirrors them)
    kernels: tuple[int, ...] = (5, 5, 3, 3)
    likelihood: str = "bernoulli"  # bernoulli | gaussian
    sigma_x: float = 0.1  # gaussian likelihood's pixel scale
    beta: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ImageVAEConfig:
        d = dict(d)
        for k in ("image_shape", "hidden", "channels", "kernels"):
            d[k] = tuple(d[k])
        return cls(**d)


PRESETS: dict[str, ImageVAEConfig] = {
    "mnist-paper": ImageVAEConfig("mlp", (1, 28, 28), z_size=64, hidden=(1024, 1024, 1024)),
    "mnist": ImageVAEConfig("mlp", (1, 28, 28), z_size=32, hidden=(512, 512)),
    "mnist-tiny": ImageVAEConfig("mlp", (1, 28, 28), z_size=8, hidden=(64,)),
    "celeba-paper": ImageVAEConfig(
        "conv", (3, 64, 64), z_size=1024, channels=(256, 512, 1024, 2048), likelihood="gaussian", sigma_x=0.1
    ),
    "celeba": ImageVAEConfig(
        "conv", (3, 64, 64), z_size=128, channels=(32, 64, 128, 256), likelihood="gaussian", sigma_x=0.1
    ),
    "celeba-tiny": ImageVAEConfig(
        "conv", (3, 64, 64), z_size=8, channels=(4, 8, 8, 16), likelihood="gaussian", sigma_x=0.1
    ),
}


def _mlp(sizes: list[int]) -> nn.Sequential:
    mods: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        mods += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*mods[:-1])  # no activation after the last layer


class ImageVAE(nn.Module):
    def __init__(self, config: ImageVAEConfig) -> None:
        super().__init__()
        self.config = c = config
        pixels = math.prod(c.image_shape)
        if c.kind == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), _mlp([pixels, *c.hidden]), nn.ReLU())
            feat = c.hidden[-1]
            self.decoder = nn.Sequential(_mlp([c.z_size, *reversed(c.hidden), pixels]))
        elif c.kind == "conv":
            ch, size = c.image_shape[0], c.image_shape[1]
            enc: list[nn.Module] = []
            for width, k in zip(c.channels, c.kernels, strict=True):
                enc += [nn.Conv2d(ch, width, k, stride=2, padding=k // 2), nn.ReLU()]
                ch, size = width, (size + 1) // 2
            self.encoder = nn.Sequential(*enc, nn.Flatten())
            self.top = (ch, size)  # (2048, 4) at the paper's sizes
            feat = ch * size * size
            dec: list[nn.Module] = [nn.Linear(c.z_size, feat), nn.Unflatten(1, (ch, size, size)), nn.ReLU()]
            outs = [*reversed(c.channels[:-1]), c.image_shape[0]]
            for k, width in enumerate(outs):
                dec.append(nn.ConvTranspose2d(ch, width, 4, stride=2, padding=1))
                if k < len(outs) - 1:
                    dec.append(nn.ReLU())
                ch = width
            self.decoder = nn.Sequential(*dec)
        else:
            raise ValueError(f"kind must be mlp or conv, not {c.kind!r}")
        self.to_z = nn.Linear(feat, 2 * c.z_size)

    # -- the LatentModel protocol of the engine ----------------------------------------------------
    @property
    def z_size(self) -> int:
        return self.config.z_size

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C, H, W) in [0, 1] -> (mu, sigma), each (N, Z)."""
        mu, s = self.to_z(self.encoder(x)).chunk(2, -1)
        return mu, F.softplus(s) + 1e-4

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) pre-sigmoid pixel means."""
        return self.decoder(z).reshape(len(z), *self.config.image_shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) pixel means in [0, 1] (what is shown: the paper shows means, not samples)."""
        return torch.sigmoid(self.logits(z))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(torch.randn(n, self.z_size, generator=generator))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        mu, sigma = self.encode(x)
        z = mu + sigma * torch.randn(mu.shape, generator=generator, device=mu.device)
        return vae_loss(self.config, x, self.logits(z), mu, sigma)


def vae_loss(
    config: ImageVAEConfig, x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor
) -> dict:
    """Named terms, per image (nats): ``recon`` (-log p(x|z)), ``kl`` and ``loss`` = recon + beta * kl."""
    if config.likelihood == "bernoulli":
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    else:
        s = config.sigma_x
        err = (torch.sigmoid(logits) - x) ** 2 / (2 * s * s) + math.log(s) + 0.5 * math.log(2 * math.pi)
        recon = err.flatten(1).sum(1)
    kl = 0.5 * (mu**2 + sigma**2 - 1 - 2 * torch.log(sigma)).sum(1)
    recon, kl = recon.mean(), kl.mean()
    return {"loss": recon + config.beta * kl, "recon": recon.detach(), "kl": kl.detach(), "beta": config.beta}
