"""The phrases a live stream plays: a latent random walk, each step moved by the actor toward the
rules and decoded under their constraints (checked; redrawn when it fails), and call and response
(the player's phrase moved toward the rules)."""

from __future__ import annotations

import math
import threading

import numpy as np
import torch


class PhraseMaker:
    """Successive phrases from a latent random walk, each step steered by the actor.

    z_{k+1} = sqrt(1 - a^2) z_k + a eps  keeps z distributed as the prior while neighbouring phrases
    stay related (``variation`` a in [0, 1]: 0 repeats, 1 jumps)."""

    def __init__(
        self,
        model,
        rules,
        fitted,
        values: dict | None = None,
        temperature: float = 0.5,
        variation: float = 0.35,
        seed: int = 0,
        enforce: bool = True,
    ) -> None:
        self.model, self.rules, self.fitted, self.enforce = model, rules, fitted, enforce
        self.values, self.temperature, self.variation = values, temperature, variation
        self.gen = torch.Generator().manual_seed(seed)
        self.z = torch.randn(1, model.config.z_size, generator=self.gen)
        self.held: tuple[np.ndarray, dict] | None = None  # hold: (tokens, info) played again and again
        self._step: float | None = None  # a one-off walk step (mutate), instead of ``variation``
        self.lock = threading.Lock()
        self.version = 0  # bumped by every change, so queued phrases can tell they are stale

    def update(self, **changes) -> None:
        """Change rules (with their fitted actor), values, temperature or variation."""
        with self.lock:
            for k, v in changes.items():
                if not hasattr(self, k):
                    raise AttributeError(k)
                setattr(self, k, v)
            self.version += 1

    def hold(self, phrase: tuple[np.ndarray, dict] | None) -> None:
        """Loop ``phrase`` (tokens, info) from the next phrase on; None lets the walk go on."""
        self.update(held=None if phrase is None else (np.array(phrase[0]), dict(phrase[1])))

    def mutate(self, z: torch.Tensor, amount: float = 0.15) -> None:
        """The next phrase is a small step (``amount``, like ``variation``) from latent ``z``, the
        walk position of the phrase now playing; the walk goes on from there. Ends a hold."""
        with self.lock:
            self.z, self._step, self.held = z.clone().reshape(1, -1), amount, None
            self.version += 1

    def _condition(self, n: int):
        from melody_lc.constrain import conditions

        if self.rules is None:
            return None, torch.zeros(n, 0)
        if self.rules.open and not self.values:  # open parameters left unset: drawn once, kept for the stream
            cond, _ = conditions(
                self.rules, 1, None, np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=self.gen)))
            )
            self.values = {k: v[0].item() for k, v in cond.items()}
        return conditions(self.rules, n, self.values)

    @torch.inference_mode()
    def next(self) -> tuple[np.ndarray, dict]:
        with self.lock:
            if self.held is not None:
                tokens, info = self.held
                return tokens.copy(), {**info, "source": "hold", "version": self.version}
            a = self.variation if self._step is None else self._step
            self._step = None
            self.z = math.sqrt(1 - a * a) * self.z + a * torch.randn(self.z.shape, generator=self.gen)
            cond, cvec = self._condition(1)
            z2 = self.fitted.actor(self.z, cvec) if self.fitted is not None else self.z
            if self.rules is None:
                tokens = self.model.decode(z2, temperature=self.temperature, generator=self.gen).numpy()[0]
                return tokens, {"source": "generated", "version": self.version, "z": self.z.clone()}
            return self._checked(z2, cond, cvec)

    LIVE_REDRAWS = 4  # a phrase that breaks a rule is drawn again this many times (a small walk step each)

    def _checked(self, z2, cond, cvec) -> tuple[np.ndarray, dict]:
        """The phrase decoded under the rules' constraints and verified; redrawn near the walk's
        position if it fails. One that never passes is handed over marked (``info["unmet"]``)."""
        from melody_lc.constrain import decode_checked

        redraws = 0
        while True:
            c = decode_checked(self.rules, self.model, z2, cond, self.temperature, self.gen, mask=self.enforce)
            if c.ok[0] or not self.enforce or redraws == self.LIVE_REDRAWS:
                break
            redraws += 1
            z = math.sqrt(1 - 0.1**2) * self.z + 0.1 * torch.randn(self.z.shape, generator=self.gen)
            z2 = self.fitted.actor(z, cvec) if self.fitted is not None else z
        info = {
            "source": "generated",
            "version": self.version,
            "z": self.z.clone(),
            "satisfied": (~c.failed[0]).tolist(),
            "interventions": int(c.interventions[0]),
            "redraws": redraws,
            "values": {k: float(v[0]) for k, v in cond.items()} if cond else {},
        }
        if not c.ok[0]:
            info["unmet"] = [n for n, bad in zip(self.rules.names, c.failed[0]) if bad]
        return c.tokens[0], info

    def respond(self, tokens: np.ndarray) -> tuple[np.ndarray, dict]:
        """Call and response: the player's phrase moved toward the rules (identity-preserving)."""
        from melody_lc.constrain import transform

        with self.lock:
            version = self.version
            if self.fitted is None:
                return tokens, {"source": "response", "version": version}
            out, report = transform(
                tokens, self.rules, self.model, self.fitted, values=self.values, enforce=self.enforce
            )
            info = {
                "source": "response",
                "version": version,
                "called": np.asarray(tokens).tolist(),
                "steps_changed": report["steps_changed"],
                "interventions": report["interventions_per_melody"],
                "satisfied": [bool(r["satisfied"]) for r in report["rules"].values()],
            }
            if not report["all_rules"]:
                info["unmet"] = [n for n, r in report["rules"].items() if not r["satisfied"]]
            return out[0], info
