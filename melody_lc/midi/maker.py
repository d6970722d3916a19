"""The phrases a live stream plays: a latent random walk, each step moved by the actor toward the
rules and decoded under their constraints (checked; redrawn when it fails), and call and response
(the player's phrase moved toward the rules). With a plan (a rules file of phrase sections,
melody_lc.rules.plan) each phrase plays its section's rules through that section's actor, and a
morph's phrases decode between the actors of its two sides."""

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
        plan=None,
        fits: dict | None = None,
    ) -> None:
        """``plan`` (a Plan) and ``fits`` (each section's fitted actor by its rules' digest) make the
        rules change from phrase to phrase; ``rules`` and ``fitted`` are then phrase 1's."""
        self.model, self.rules, self.fitted, self.enforce = model, rules, fitted, enforce
        self.plan, self.fits = plan, fits or {}
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

    def _condition(self, rules, n: int):
        from melody_lc.constrain import conditions

        if rules is None:
            return None, torch.zeros(n, 0)
        unset = [k for k in rules.open if k not in (self.values or {})]
        if unset:  # open parameters left unset: drawn once, kept for the stream
            cond, _ = conditions(
                rules, 1, None, np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=self.gen)))
            )
            self.values = {**(self.values or {}), **{k: cond[k][0].item() for k in unset}}
        return conditions(rules, n, self.values)

    def _fit_of(self, rules):
        return self.fits.get(rules.digest()) if rules is not None else None

    def _play(self, index: int | None):
        """(rules, fitted, step, move): what phrase ``index`` plays, and ``move(z)``, the latent to
        decode for the walk's position z (the actor's, or between two actors in a morph)."""
        step = self.plan.at(index) if self.plan is not None and index is not None else None
        if step is None or step.source is None:
            rules = self.rules if step is None else step.rules
            fitted = self.fitted if step is None else self._fit_of(rules)
            _, cvec = self._condition(rules, 1)
            return rules, fitted, step, (lambda z: fitted.actor(z, cvec)) if fitted is not None else (lambda z: z)
        ends = []
        for side in (step.source, step.target):
            fitted = self._fit_of(side.rules)
            ends.append((fitted, self._condition(side.rules, 1)[1]))

        def move(z):
            a, b = (f.actor(z, c) if f is not None else z for f, c in ends)
            return (1 - step.t) * a + step.t * b

        return step.rules, None, step, move

    @torch.inference_mode()
    def next(self, index: int | None = None) -> tuple[np.ndarray, dict]:
        """The phrase to play as phrase ``index`` of the stream (0-based; with a plan it picks the section)."""
        with self.lock:
            if self.held is not None:
                tokens, info = self.held
                return tokens.copy(), {**info, "source": "hold", "version": self.version}
            a = self.variation if self._step is None else self._step
            self._step = None
            self.z = math.sqrt(1 - a * a) * self.z + a * torch.randn(self.z.shape, generator=self.gen)
            rules, fitted, step, move = self._play(index)
            if rules is None:
                tokens = self.model.decode(move(self.z), temperature=self.temperature, generator=self.gen).numpy()[0]
                info = {"source": "generated", "version": self.version, "z": self.z.clone(), "satisfied": []}
            else:
                tokens, info = self._checked(rules, move)
            if step is not None:
                info.update(self._section_info(step, index, tokens))
            return tokens, info

    def _section_info(self, step, index: int, tokens) -> dict:
        """Where phrase ``index`` stands in the plan; for a morph, the rules of each side it meets."""
        info = {"section": step.words(self.plan.length, index)}
        if step.source is not None:
            info["t"] = step.t
            for key, side in (("source_met", step.source), ("target_met", step.target)):
                cond, _ = self._condition(side.rules, 1)
                ok = side.rules.satisfied(np.asarray(tokens)[None], cond)[0]
                info[key] = [n for n, good in zip(side.rules.names, ok) if good]
        return info

    LIVE_REDRAWS = 4  # a phrase that breaks a rule is drawn again this many times (a small walk step each)

    def _checked(self, rules, move) -> tuple[np.ndarray, dict]:
        """The phrase decoded under the rules' constraints and verified; redrawn near the walk's
        position if it fails. One that never passes is handed over marked (``info["unmet"]``)."""
        from melody_lc.constrain import decode_checked

        cond, _ = self._condition(rules, 1)
        z2, redraws = move(self.z), 0
        while True:
            c = decode_checked(rules, self.model, z2, cond, self.temperature, self.gen, mask=self.enforce)
            if c.ok[0] or not self.enforce or redraws == self.LIVE_REDRAWS:
                break
            redraws += 1
            z2 = move(math.sqrt(1 - 0.1**2) * self.z + 0.1 * torch.randn(self.z.shape, generator=self.gen))
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
            info["unmet"] = [n for n, bad in zip(rules.names, c.failed[0]) if bad]
        return c.tokens[0], info

    def respond(self, tokens: np.ndarray, index: int | None = None) -> tuple[np.ndarray, dict]:
        """Call and response: the player's phrase moved toward the rules (identity-preserving) of
        phrase ``index`` (with a plan: its section's; in a morph, the nearer side's)."""
        from melody_lc.constrain import transform

        with self.lock:
            version = self.version
            rules, fitted = self.rules, self.fitted
            if self.plan is not None and index is not None:
                step = self.plan.at(index)
                side = step.section if step.source is None else (step.source if step.t < 0.5 else step.target)
                rules, fitted = side.rules, self._fit_of(side.rules)
            if fitted is None:
                return tokens, {"source": "response", "version": version}
            self._condition(rules, 1)  # the stream's values of its open parameters
            out, report = transform(tokens, rules, self.model, fitted, values=self.values, enforce=self.enforce)
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
