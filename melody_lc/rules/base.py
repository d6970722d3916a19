"""The base class of every rule kind, built in or from a plugin (see :mod:`melody_lc.rules.kinds`)."""

from __future__ import annotations

import numpy as np

from melody_lc.rules.syntax import Cursor

PLUGIN_API_VERSION = 2


class RuleKind:
    """Base class of a constraint kind (built in or from a plugin). Its methods get the tokens the
    rule sees: (N, 256), or (N, 16 * bars) for a rule scoped to bars ('bars 9-12: ...')."""

    name = ""
    aliases: tuple[str, ...] = ()
    summary = ""
    scale = 1.0  # violation at which the reward has fallen to 1/e
    mask_scale: float | None = (
        None  # fitting: interventions per melody at which the rule scores 1/e (None: the default)
    )
    # fitting: the actor learns this rule's graded reward slowly (a form's repeats), so a file with it
    # gets more rounds (FitConfig.slow_rounds)
    slow_fit = False
    # part of every fit's key: change it (an int or a string) when what the kind asks or scores
    # changes, and the fits made before are made anew instead of found (None: never changed)
    fit_version: int | str | None = None
    api_version = PLUGIN_API_VERSION

    def parse(self, cur: Cursor) -> dict:
        raise NotImplementedError

    def describe(self, params: dict) -> str:
        raise NotImplementedError

    def violation(self, tokens: np.ndarray, params: dict, cond: dict) -> np.ndarray:
        raise NotImplementedError

    def reward(self, tokens: np.ndarray, params: dict, cond: dict) -> np.ndarray:
        return np.exp(-self.violation(tokens, params, cond) / self.scale)

    def satisfied(self, tokens: np.ndarray, params: dict, cond: dict) -> np.ndarray:
        return self.violation(tokens, params, cond) <= 1e-9

    def open_params(self, params: dict) -> dict[str, tuple]:
        """Parameters left open with '?': name -> ("category", n) or ("range", low, high)."""
        return {}

    def offending_notes(self, tokens: np.ndarray, params: dict, cond: dict) -> np.ndarray:
        """(N, steps) bool, shaped as ``tokens``: the note-ons that break the rule, for marking in red
        (none by default: a rule of the whole melody, such as the rest share, marks the melody, not
        its notes)."""
        return np.zeros(tokens.shape, bool)

    def constraint(self, params: dict, cond: dict, n: int):
        """The rule as a decode-time constraint over n melodies (a :class:`~melody_lc.melody.steer.Constraint`),
        or None: such a kind is enforced by verification alone. ``cond`` holds the open parameters'
        values (n each), ``_tonic``, the key rule's tonic per melody, and ``_steps``, the steps the
        rule sees (256, or 16 per bar of its scope: the constraint then sees those steps only)."""
        return None
