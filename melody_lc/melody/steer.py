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
pitch, the notes so far in the melody): a steered decode runs the bars in sequence. Where every
constraint depends on nothing but the step and its own bar's note-ons (key, scale, range, chords,
notes per bar, also scoped to bars: :meth:`Constraint.by_bar`), the bars of a melody do not need
each other and run at once, as an unsteered decode runs them: 16 steps over 16 rows per melody
instead of 256 steps over one (:meth:`Steer.start_bars`, :meth:`Steer.choose_bars`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from melody_lc.melody.encoding import BAR_STEPS, HOLD, NUM_CLASSES, NUM_PITCHES, REST, STEPS

NOTES = slice(0, 128)
BARS = STEPS // BAR_STEPS


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


def count_bounds(count: torch.Tensor, low, high, steps_left: int) -> torch.Tensor:
    """(N, 130) for note-ons counted so far ``count`` (N,) that must end between whole counts
    ``low`` and ``high`` (N,) (None: no bound) within ``steps_left`` steps, this one included: no
    note-on at the limit; with just enough steps left for the note-ons still needed, one now."""
    every = torch.ones_like(count, dtype=torch.bool)
    notes = count < high if high is not None else every
    silence = low - count < steps_left if low is not None else every
    return by_kind(notes, silence, silence)


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


@dataclass
class ByBar:
    """A constraint that needs nothing but the step and its bar's own note-ons
    (:meth:`Constraint.by_bar`), over the ``length`` steps it sees:

    * ``table``: (N or 1, length or 1, 130) bool, the classes allowed at each step, or None;
    * ``low``, ``high``: (N or 1, length // 16 or 1) whole note-on counts each bar needs and allows, or None;
    * ``needs_note``: (first bar, last bar): at least one note-on in those bars, or None. The
      bars' last steps are drawn together, so the last bar's last step starts a note when no bar of
      the span has one before its own last step (one step sooner than :meth:`Constraint.allowed`
      would force it in a melody whose only note would come on another bar's last step).
    """

    table: torch.Tensor | None = None
    low: torch.Tensor | None = None
    high: torch.Tensor | None = None
    needs_note: tuple[int, int] | None = None


class Constraint:
    """One rule's decode-time constraint. :meth:`allowed` may keep state of its own between calls
    (a decode calls it once per step, steps in order, on the same N rows)."""

    def by_bar(self, n: int, length: int = STEPS) -> ByBar | None:
        """The constraint as a :class:`ByBar` for n rows over ``length`` steps, when it depends on
        nothing but the step and the note-ons of the step's own bar (then, if every constraint of a
        decode has one, its bars run at once); None (the default): it needs :meth:`allowed`'s state,
        and the bars run in sequence. Both must allow the same classes."""
        return None

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
        """Prepare a decode of n melodies, their bars in sequence: the state :meth:`choose` updates."""
        self._start_stats(n, device)
        return DecodeState(n, device)

    def _start_stats(self, n: int, device) -> None:
        z = torch.zeros(n, device=device)
        names = list(dict.fromkeys(name for name, _ in self.constraints))  # a rule may have several constraints
        self._names = names
        self._row = [names.index(name) for name, _ in self.constraints]
        self._by_rule = torch.zeros(len(names), n, dtype=torch.long, device=device)  # rows of stats.by_rule
        self.stats = SteerStats(z.long(), z.clone(), z.bool(), dict(zip(names, self._by_rule)), [None] * n)
        self._no_need = torch.zeros(n, dtype=torch.long, device=device), torch.zeros(n, dtype=torch.bool, device=device)
        self._no_limit = torch.full((n,), STEPS, dtype=torch.long, device=device)

    def choose(
        self, logits: torch.Tensor, state: DecodeState, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The class (N,) of this step, drawn under the constraints; updates ``state`` and the stats."""
        logits = self._preferred(logits.float(), self.prefer[:, state.step] if self.prefer is not None else None)
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
        tok = self._draw_under(logits, which, masks, temperature, generator, 0)
        state.update(tok)
        return tok

    # -- the bars of each melody at once (every constraint has a ByBar) ----------------------------
    def start_bars(self, n: int, device="cpu") -> bool:
        """Prepare a decode of n melodies with their bars at once, one row per bar (row
        ``melody * 16 + bar``), if every constraint has a :class:`ByBar`; False (nothing prepared)
        if one has none: the bars then run in sequence (:meth:`start`, :meth:`choose`)."""
        specs = []
        for _, c in self.constraints:
            if (spec := c.by_bar(n)) is None:  # asked no further: a scoped table is built for nothing
                return False
            specs.append(spec)
        self._start_stats(n * BARS, device)  # stats per bar row until finish_bars
        self._melodies = n

        def per_row(counts):  # (N or 1, 16 or 1) -> (n * 16,)
            return None if counts is None else counts.to(device).expand(n, BARS).reshape(-1)

        self._specs = [
            (i, None if b.table is None else b.table.to(device), per_row(b.low), per_row(b.high), b.needs_note)
            for i, b in enumerate(specs)
        ]
        self._bar_onsets = torch.zeros(n * BARS, dtype=torch.long, device=device)
        return True

    def choose_bars(
        self, logits: torch.Tensor, t: int, rows: slice, temperature: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The class of step ``t`` of every bar in the bar rows ``rows`` (whole melodies), drawn
        under the constraints (see :meth:`start_bars`)."""
        a, b = rows.start, rows.stop
        assert a % BARS == 0 and b % BARS == 0, "a block of bar rows holds whole melodies"
        first, last = a // BARS, b // BARS  # the melodies of these rows
        want = self.prefer.view(-1, BAR_STEPS)[a:b, t] if self.prefer is not None else None
        logits = self._preferred(logits.float(), want)
        count = self._bar_onsets[a:b]
        steps = torch.arange(BARS, device=logits.device) * BAR_STEPS + t  # each bar's step t
        which, masks = [], []
        for i, table, low, high, needs_note in self._specs:
            mask = None
            if table is not None:
                tab = table[first:last] if table.shape[0] > 1 else table  # (these melodies or 1, ...)
                tab = tab[:, steps] if tab.shape[1] > 1 else tab
                # may be a view of the table (stride 0): masks are never written in place here
                mask = tab.expand(last - first, BARS, NUM_CLASSES).reshape(-1, NUM_CLASSES)
            if low is not None or high is not None:
                rows_low, rows_high = (None if x is None else x[a:b] for x in (low, high))
                kinds = count_bounds(count, rows_low, rows_high, BAR_STEPS - t)
                mask = kinds if mask is None else mask & kinds
            if needs_note is not None and t == BAR_STEPS - 1:  # no note yet in those bars: the last one starts one
                lo, hi = needs_note
                none = count.view(-1, BARS)[:, lo : hi + 1].sum(1) == 0
                at = torch.zeros(last - first, BARS, dtype=torch.bool, device=count.device)
                at[:, hi] = none
                mask = force_note(everything(b - a, count.device) if mask is None else mask.clone(), at.view(-1))
            if mask is not None:
                which.append(i)
                masks.append(mask)
        tok = self._draw_under(logits, which, masks, temperature, generator, a)
        self._bar_onsets[a:b] += tok < NUM_PITCHES
        return tok

    def finish_bars(self) -> None:
        """After a decode by bars: the stats of each melody's bar rows summed into one row."""
        s, n = self.stats, self._melodies
        blocked = [next((b for b in s.blocked_by[m * BARS : (m + 1) * BARS] if b is not None), None) for m in range(n)]
        self._by_rule = self._by_rule.view(len(self._names), n, BARS).sum(2)
        self.stats = SteerStats(
            s.interventions.view(n, BARS).sum(1),
            s.mass_removed.view(n, BARS).sum(1),
            s.dead_end.view(n, BARS).any(1),
            dict(zip(self._names, self._by_rule)),
            blocked,
        )

    # -- shared by both ---------------------------------------------------------------------------
    def _preferred(self, logits: torch.Tensor, want: torch.Tensor | None) -> torch.Tensor:
        """A transformation's input tokens ``want`` (rows,) favoured by ``keep``."""
        if want is None or self.keep <= 0:
            return logits
        logits = logits.clone()
        logits[torch.arange(len(logits), device=logits.device), want] += self.keep
        return logits

    def _draw_under(
        self,
        logits: torch.Tensor,
        which: list[int],
        masks: list[torch.Tensor],
        temperature: float,
        generator: torch.Generator | None,
        offset: int,
    ) -> torch.Tensor:
        """Draw as the decoder would, and again from the allowed classes where that was forbidden;
        the stats of rows ``offset`` onwards are updated (interventions, removed mass, dead ends)."""
        probs = torch.softmax(logits / (temperature if temperature > 0 else 1.0), -1)
        raw = logits.argmax(-1) if temperature <= 0 else draw(probs, generator)
        if not masks:
            return raw
        rows = slice(offset, offset + len(raw))
        allowed = masks[0] & masks[1] if len(masks) > 1 else masks[0]  # a new tensor, or a rule's own
        for m in masks[2:]:
            allowed &= m
        some = allowed.any(1)
        if not some.all():
            dead = ~some
            self._dead_ends(dead, [(self.constraints[i][0], m) for i, m in zip(which, masks)], offset)
            allowed = allowed.clone()
            allowed[dead] = True  # a dead end writes what the decoder wrote; verification redraws it
        hit = ~allowed.gather(1, raw[:, None]).squeeze(1)
        s = self.stats
        s.mass_removed[rows] += probs.masked_fill(allowed, 0).sum(1)
        s.interventions[rows] += hit
        if not hit.any():
            return raw
        idx = hit.nonzero().squeeze(1)
        # which rules forbade the decoder's class, in the rows where it was forbidden
        rule = torch.tensor([self._row[i] for i in which])[:, None].expand(-1, len(idx))
        forbade = ~torch.stack([m[idx, raw[idx]] for m in masks])  # (rules, rows hit)
        self._by_rule.index_put_((rule, (idx + offset).expand_as(rule)), forbade.long(), accumulate=True)
        if temperature <= 0:
            again = logits[idx].masked_fill(~allowed[idx], float("-inf")).argmax(-1)
        else:
            again = draw(probs[idx] * allowed[idx], generator)
        tok = raw.clone()
        tok[idx] = again
        return tok

    def _dead_ends(self, dead: torch.Tensor, masks, offset: int = 0) -> None:
        """For each newly dead row (``offset`` + its index), a smallest set of rules that together
        allow nothing (greedy)."""
        s = self.stats
        for here in dead.nonzero().squeeze(1).tolist():
            row = here + offset
            if s.dead_end[row]:
                continue
            s.dead_end[row] = True
            involved = [(name, m[here]) for name, m in masks if not m[here].all()]
            for i in range(len(involved) - 1, -1, -1):  # drop each rule the rest still contradict without
                rest = involved[:i] + involved[i + 1 :]
                if rest and not torch.stack([m for _, m in rest]).all(0).any():
                    involved = rest
            s.blocked_by[row] = tuple(name for name, _ in involved)
