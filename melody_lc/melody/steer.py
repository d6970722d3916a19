"""Decode-time constraints: what the decoder may write at each step, from a small per-row state.

The paper's latent constraints move z to where the decoder *usually* writes what the rules ask;
this module makes it *always*. A constraint looks at :class:`DecodeState` (what has been written so
far in each row, one row per melody) and answers which of the 130 classes the next step may take::

    class MyConstraint(Constraint):
        def allowed(self, state):            # (N, 130) bool, or None for "anything"
            ...

    steer = Steer([("key:1", KeyConstraint(...)), ...])
    tokens = model.decode(z, temperature, generator, steer=steer)   # steer.stats has the interventions

:class:`Steer` combines the rules' constraints (logical and) and draws each step from the decoder's
distribution restricted to the allowed classes. It first draws as the decoder would; only when that
class is forbidden does it draw again from the renormalised allowed classes, which is exactly a draw
from the restricted distribution. Such a step is an *intervention*; the probability mass the mask
removed, summed over the steps, is the expected number of interventions: how much the rules had to
overrule the decoder. A step where the constraints together allow nothing is a *dead end*: that row
takes the decoder's own class, is marked, and is redrawn by the caller after verification.

Rows are whole melodies, so a constraint sees bar lines as the music does (the previous bar's last
pitch, the notes so far in the melody): a steered decode runs the bars in sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from melody_lc.melody.encoding import BAR_STEPS, HOLD, NUM_CLASSES, NUM_PITCHES, REST, STEPS

NOTES = slice(0, 128)


def uniforms(shape: tuple, generator: torch.Generator | None, device=None) -> torch.Tensor:
    """Uniforms in (0, 1] for :func:`draw`: never a class of weight 0."""
    return 1 - torch.rand(shape, generator=generator, device=device)


def draw(
    weights: torch.Tensor, generator: torch.Generator | None = None, u: torch.Tensor | None = None
) -> torch.Tensor:
    """One class per row (N,), drawn in proportion to ``weights`` (N, C), which need not sum to 1
    (zero: never drawn): by the inverse of the cumulative distribution at a uniform u in (0, 1]
    (``u`` (N, 1), or drawn from ``generator``).
    The same draw as ``torch.multinomial(weights, 1)``, about 13x faster on a CPU for 130 classes."""
    cdf = weights.cumsum(-1)
    if u is None:
        u = uniforms((len(weights), 1), generator, weights.device)
    # the first class whose cumulative weight reaches u of the total (the cdf never decreases)
    return torch.searchsorted(cdf, u * cdf[:, -1:]).squeeze(1).clamp_(max=weights.shape[-1] - 1)


class DecodeState:
    """What has been written so far in each of N rows; :meth:`update` after each step.

    All fields are tensors with N rows; pitches are MIDI numbers, -1 where there is none yet.
    """

    def __init__(self, n: int, device: torch.device | str = "cpu", length: int = STEPS) -> None:
        self.n, self.step = n, 0  # step: the index (0..255) of the step about to be written
        self.length = length  # steps in all: 256, or a scoped rule's bars (see rules.constraints.Scoped)
        long = dict(dtype=torch.long, device=device)
        self.tokens = torch.full((n, length), REST, **long)  # what has been written, step by step
        self.last_pitch = torch.full((n,), -1, **long)  # the last note-on's pitch (rests do not reset it)
        self.highest = torch.full((n,), -1, **long)  # the highest pitch so far
        self.lowest = torch.full((n,), 128, **long)  # the lowest pitch so far (128: none yet)
        self.sounding = torch.zeros(n, dtype=torch.bool, device=device)  # a note sounds into this step
        self.onsets = torch.zeros(n, **long)  # note-ons so far in the melody
        self.bar_onsets = torch.zeros(n, **long)  # note-ons so far in this bar
        self.silent_steps = torch.zeros(n, **long)  # steps so far where no note sounds
        self.max_leap = torch.zeros(n, **long)  # largest interval between successive notes so far
        self.used = torch.zeros(n, 128, dtype=torch.bool, device=device)  # pitches used so far
        self.distinct = torch.zeros(n, **long)
        self.notes_needed = torch.zeros(n, **long)  # note-ons the rules still need (set by the steer)
        self.note_needed_now = torch.zeros(n, dtype=torch.bool, device=device)  # a note-on now is one of them
        self.notes_left = torch.full((n,), length, **long)  # note-ons the rules still allow (set by the steer)

    @property
    def bar(self) -> int:
        return self.step // BAR_STEPS

    @property
    def bars(self) -> int:
        return self.length // BAR_STEPS

    @property
    def steps_left(self) -> int:
        """Steps still to write in the melody, this one included."""
        return self.length - self.step

    @property
    def bar_steps_left(self) -> int:
        """Steps still to write in this bar, this one included."""
        return BAR_STEPS - self.step % BAR_STEPS

    def update(self, tok: torch.Tensor) -> None:
        """Record the classes (N,) just written at this step."""
        self.tokens[:, self.step] = tok
        is_note = tok < NUM_PITCHES
        pitch = tok.clamp(max=127)
        # a note sounds into the next step after a note-on, or a HOLD of a sounding note; else silence
        self.sounding = is_note | ((tok == HOLD) & self.sounding)
        self.silent_steps += ~self.sounding
        leap = torch.where(is_note & (self.last_pitch >= 0), (pitch - self.last_pitch).abs(), 0)
        self.max_leap = torch.maximum(self.max_leap, leap)
        self.last_pitch = torch.where(is_note, pitch, self.last_pitch)
        self.highest = torch.maximum(self.highest, torch.where(is_note, pitch, -1))
        self.lowest = torch.minimum(self.lowest, torch.where(is_note, pitch, 128))
        was_used = self.used.gather(1, pitch[:, None])
        self.used.scatter_(1, pitch[:, None], was_used | is_note[:, None])
        self.distinct = self.distinct + (is_note & ~was_used[:, 0])
        self.onsets += is_note
        if self.step % BAR_STEPS == BAR_STEPS - 1:  # the bar is complete: the next step starts a new one
            self.bar_onsets = torch.zeros_like(self.bar_onsets)
        else:
            self.bar_onsets = self.bar_onsets + is_note
        self.step += 1


# --------------------------------------------------------------------------------------------------
# Building blocks for masks, (N, 130) bool
# --------------------------------------------------------------------------------------------------
def everything(n: int, device="cpu") -> torch.Tensor:
    return torch.ones(n, NUM_CLASSES, dtype=torch.bool, device=device)


# row 4 * rest + 2 * hold + notes: which of (note-ons, HOLD, REST) a step may take
_BY_KIND = torch.tensor(
    [[(k >> 0) & 1] * NUM_PITCHES + [(k >> 1) & 1, (k >> 2) & 1] for k in range(8)], dtype=torch.bool
)


def by_kind(notes: torch.Tensor, hold: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
    """(N, 130): every note-on where ``notes`` (N,) bool, HOLD where ``hold``, REST where ``rest``
    (one table lookup: cheaper per step than masking a mask of everything)."""
    return _BY_KIND.to(notes.device)[notes.long() + 2 * hold.long() + 4 * rest.long()]


def only_notes(pitches: torch.Tensor) -> torch.Tensor:
    """(N, 128) allowed pitches -> (N, 130): those note-ons, HOLD and REST."""
    return torch.cat([pitches, pitches.new_ones(len(pitches), 2)], 1)


def force_note(mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Forbid HOLD and REST where ``rows`` (N,) bool: the step must start a note."""
    mask[:, HOLD:] &= ~rows[:, None]
    return mask


def forbid_notes(mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    mask[:, NOTES] &= ~rows[:, None]
    return mask


def forbid_silence(mask: torch.Tensor, rows: torch.Tensor, state: DecodeState) -> torch.Tensor:
    """Where ``rows``: this step must sound (a note-on, or a HOLD of a sounding note)."""
    mask[:, REST] &= ~rows
    mask[:, HOLD] &= ~(rows & ~state.sounding)
    return mask


class Constraint:
    """One rule's decode-time constraint. :meth:`allowed` may keep state of its own between calls
    (a decode calls it once per step, steps in order, on the same N rows)."""

    def allowed(self, state: DecodeState) -> torch.Tensor | None:
        """(N, 130) bool: the classes step ``state.step`` may take; None when anything may. The
        steer only reads it, so a constraint may return the same tensor at every step."""
        raise NotImplementedError

    def notes_needed(self, state: DecodeState) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(count, now): the note-ons this rule still needs from this step on (N,), and whether a
        note-on at this step would be one of them (N,) bool; None when it needs none. The steer
        puts the largest count in ``state.notes_needed`` (and ``state.note_needed_now``) before it
        asks for masks, so that a rule that needs silence makes room for those notes in time."""
        return None

    def notes_left(self, state: DecodeState) -> torch.Tensor | None:
        """(N,) the most note-ons this rule still allows from this step on (None: no limit); the
        steer puts the smallest in ``state.notes_left``, so that a rule that needs a particular
        last note can see when a note may be the last."""
        return None


@dataclass
class SteerStats:
    """Per row: interventions, removed probability mass (summed over steps), dead end; per rule:
    interventions (the decoder's class was forbidden by that rule), and the rules of dead ends."""

    interventions: torch.Tensor
    mass_removed: torch.Tensor
    dead_end: torch.Tensor
    by_rule: dict[str, torch.Tensor]
    blocked_by: list[tuple[str, ...] | None] = field(default_factory=list)


class Steer:
    """The rules' constraints combined; draws each step of a decode under them."""

    def __init__(
        self,
        constraints: list[tuple[str, Constraint]],
        prefer: torch.Tensor | None = None,
        keep: float = 0.0,
        bar_source: list[int] | None = None,
    ) -> None:
        self.constraints = constraints
        # the decoder's own structure for repeats: bar k is decoded from the conductor's embedding of
        # bar ``bar_source[k]`` (a form's repeated phrase from its first statement's), or None
        self.bar_source = bar_source
        # a transformation remembers its input: the tokens of ``prefer`` (N, 256) get ``keep`` added
        # to their logits at each step, so the decode writes them wherever the rules allow
        self.prefer, self.keep = prefer, keep
        self.stats: SteerStats | None = None

    def __bool__(self) -> bool:
        return bool(self.constraints) or (self.prefer is not None and self.keep > 0) or self.bar_source is not None

    def start(self, n: int, device="cpu") -> DecodeState:
        z = torch.zeros(n, device=device)
        names = list(dict.fromkeys(name for name, _ in self.constraints))  # a rule may have several constraints
        self._row = [names.index(name) for name, _ in self.constraints]
        self._by_rule = torch.zeros(len(names), n, dtype=torch.long, device=device)  # rows of stats.by_rule
        self.stats = SteerStats(z.long(), z.clone(), z.bool(), dict(zip(names, self._by_rule)), [None] * n)
        self._no_need = torch.zeros(n, dtype=torch.long, device=device), torch.zeros(n, dtype=torch.bool, device=device)
        self._no_limit = torch.full((n,), STEPS, dtype=torch.long, device=device)
        return DecodeState(n, device)

    def choose(
        self, logits: torch.Tensor, state: DecodeState, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The class (N,) of this step, drawn under the constraints; updates ``state`` and the stats."""
        logits = logits.float()
        if self.prefer is not None and self.keep > 0:
            logits = logits.clone()
            logits[torch.arange(len(logits), device=logits.device), self.prefer[:, state.step]] += self.keep
        probs = torch.softmax(logits / (temperature if temperature > 0 else 1.0), -1)
        raw = logits.argmax(-1) if temperature <= 0 else draw(probs, generator)
        needed = [k for _, c in self.constraints if (k := c.notes_needed(state)) is not None]
        if len(needed) > 1:
            state.notes_needed = torch.stack([count for count, _ in needed]).amax(0)
            state.note_needed_now = torch.stack([now for _, now in needed]).any(0)
        else:
            state.notes_needed, state.note_needed_now = needed[0] if needed else self._no_need
        limits = [k for _, c in self.constraints if (k := c.notes_left(state)) is not None]
        state.notes_left = (torch.stack(limits).amin(0) if len(limits) > 1 else limits[0]) if limits else self._no_limit
        which, masks = [], []
        for i, (_, c) in enumerate(self.constraints):
            if (m := c.allowed(state)) is not None:
                which.append(i)
                masks.append(m)
        tok = raw
        if masks:
            allowed = masks[0] & masks[1] if len(masks) > 1 else masks[0]  # a new tensor, or a rule's own
            for m in masks[2:]:
                allowed &= m
            some = allowed.any(1)
            if not some.all():
                dead = ~some
                self._dead_ends(dead, [(self.constraints[i][0], m) for i, m in zip(which, masks)])
                allowed = allowed.clone()
                allowed[dead] = True  # a dead end writes what the decoder wrote; verification redraws it
            hit = ~allowed.gather(1, raw[:, None]).squeeze(1)
            s = self.stats
            s.mass_removed += probs.masked_fill(allowed, 0).sum(1)
            s.interventions += hit
            if hit.any():
                idx = hit.nonzero().squeeze(1)
                # which rules forbade the decoder's class, in the rows where it was forbidden
                rule = torch.tensor([self._row[i] for i in which])[:, None].expand(-1, len(idx))
                forbade = ~torch.stack([m[idx, raw[idx]] for m in masks])  # (rules, rows hit)
                self._by_rule.index_put_((rule, idx.expand_as(rule)), forbade.long(), accumulate=True)
                if temperature <= 0:
                    again = logits[idx].masked_fill(~allowed[idx], float("-inf")).argmax(-1)
                else:
                    again = draw(probs[idx] * allowed[idx], generator)
                tok = raw.clone()
                tok[idx] = again
        state.update(tok)
        return tok

    def _dead_ends(self, dead: torch.Tensor, masks) -> None:
        """For each newly dead row, a smallest set of rules that together allow nothing (greedy)."""
        s = self.stats
        for row in dead.nonzero().squeeze(1).tolist():
            if s.dead_end[row]:
                continue
            s.dead_end[row] = True
            involved = [(name, m[row]) for name, m in masks if not m[row].all()]
            for i in range(len(involved) - 1, -1, -1):  # drop each rule the rest still contradict without
                rest = involved[:i] + involved[i + 1 :]
                if rest and not torch.stack([m for _, m in rest]).all(0).any():
                    involved = rest
            s.blocked_by[row] = tuple(name for name, _ in involved)
