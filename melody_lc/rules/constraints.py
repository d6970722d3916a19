"""The decode-time constraints of the built-in rule kinds (see :mod:`melody_lc.melody.steer`).

Each is exact: a melody decoded under it passes the kind's exact test unless the decode hit a
dead end (the constraints together allowing nothing at some step), which the steer reports. Bounds
that need something to happen ("at least 3 notes per bar") force it only when the steps left are
just enough, so the decoder keeps every choice it can (the silence of a rests rule: the steps left
in each four-bar phrase, see :class:`Silence`).

Tolerances match the exact tests (``violation <= 1e-9``): a count bound ``x >= low`` on a float low
is ``x >= ceil(low)``.
"""

from __future__ import annotations

import numpy as np
import torch

from melody_lc.melody.encoding import BAR_STEPS, NUM_CLASSES, STEPS
from melody_lc.melody.steer import (
    ByBar,
    Constraint,
    DecodeState,
    by_kind,
    count_bounds,
    everything,
    forbid_notes,
    force_note,
    only_notes,
)

EPS = 1e-7
PITCHES = torch.arange(128)


def at_least(low) -> torch.Tensor:
    """The smallest whole count that meets a (possibly per-row, float) lower bound."""
    return torch.as_tensor(np.ceil(np.asarray(low, dtype=float) - EPS), dtype=torch.long)


def at_most(high) -> torch.Tensor:
    return torch.as_tensor(np.floor(np.asarray(high, dtype=float) + EPS), dtype=torch.long)


def _needs_a_note(mask: torch.Tensor, state: DecodeState) -> torch.Tensor:
    """Rules that fail a melody without notes: the last step starts one if none has started."""
    if state.steps_left == 1:
        force_note(mask, state.onsets == 0)
    return mask


def _one_note(state: DecodeState):
    none_yet = state.onsets == 0
    return none_yet.long(), none_yet


class PitchClasses(Constraint):
    """key / scale: note-ons only on the allowed pitch classes (N, 12), and at least one note."""

    notes_needed = staticmethod(_one_note)

    def __init__(self, allowed_pcs: np.ndarray) -> None:
        pcs = torch.from_numpy(np.array(allowed_pcs, dtype=bool))  # (N, 12), a writable copy
        self.pitches = only_notes(pcs[:, PITCHES % 12])  # (N, 130)

    def allowed(self, state):
        return _needs_a_note(self.pitches.clone(), state) if state.steps_left == 1 else self.pitches

    def by_bar(self, n, length=STEPS):
        return ByBar(table=self.pitches[:, None], needs_note=(0, length // BAR_STEPS - 1))


class PitchRange(Constraint):
    def __init__(self, n: int, low: int, high: int) -> None:
        self.pitches = only_notes(((PITCHES >= low) & (PITCHES <= high)).expand(n, 128))

    def allowed(self, state):
        return self.pitches

    def by_bar(self, n, length=STEPS):
        return ByBar(table=self.pitches[:, None])


class Onsets(Constraint):
    """A bound on note-ons, per bar (``per_bar``) or over the whole melody; ``low``/``high`` are
    whole counts (N,) or None."""

    def __init__(self, low: torch.Tensor | None, high: torch.Tensor | None, per_bar: bool) -> None:
        self.low, self.high, self.per_bar = low, high, per_bar

    def notes_needed(self, state):
        if self.low is None:
            return None
        if not self.per_bar:
            short = (self.low - state.onsets).clamp(min=0)
            return short, short > 0
        later_bars = state.bars - 1 - state.bar
        short = (self.low - state.bar_onsets).clamp(min=0)
        return short + self.low * later_bars, short > 0

    def notes_left(self, state):
        if self.high is None:
            return None
        if not self.per_bar:
            return (self.high - state.onsets).clamp(min=0)
        later_bars = state.bars - 1 - state.bar
        return (self.high - state.bar_onsets).clamp(min=0) + self.high * later_bars

    def by_bar(self, n, length=STEPS):
        if not self.per_bar:  # a count over the whole melody
            return None
        return ByBar(
            low=None if self.low is None else self.low.reshape(-1, 1),
            high=None if self.high is None else self.high.reshape(-1, 1),
        )

    def allowed(self, state):
        if self.per_bar:
            return count_bounds(state.bar_onsets, self.low, self.high, state.bar_steps_left)
        return count_bounds(state.onsets, self.low, self.high, state.steps_left)


PHRASE_STEPS = 4 * BAR_STEPS  # a rests rule paces the silence it needs by phrases of four bars


class Silence(Constraint):
    """The share of silent steps between whole counts ``low`` and ``high`` of the 256 steps (or a
    scoped rule's).

    The silence a lower bound needs is paced by phrase: by the end of each four-bar phrase but the
    last, the silence so far must have kept up with the phrase's share of ``low`` (silence is
    forced only when the steps left in the phrase are just enough for it, notes the rules need
    still start), so that rests fall between phrases, as a composer asking for room to breathe
    means, rather than all in the melody's last bars. The last phrase meets ``low`` exactly. And
    where no more silence is needed yet, a silence does not run on over a bar line by a HOLD: the
    decoder, blind to the bar before, writes that HOLD to tie a note over, and after a breath it
    would carry the silence on for as long as the note was meant to last (bars of it); a REST, the
    decoder's own rest, still may. (``paced=False``: neither, silence forced in the melody's last
    steps only, as before; ``benchmarks/rest_pacing.py`` compares the two.)"""

    def __init__(self, low: int | None, high: int | None, paced: bool = True) -> None:
        self.low, self.high, self.paced = low, high, paced

    def allowed(self, state):
        notes = hold = rest = torch.ones_like(state.sounding)
        if self.high is not None:
            full = state.silent_steps >= self.high  # no more silence: REST, or HOLD with nothing sounding
            rest = ~full
            hold = ~(full & ~state.sounding)
            # Start a silence only if the budget lasts to the bar line: a silence that must end
            # mid-bar needs a note-on there, which another rule (notes per bar) may forbid.
            rest = rest & ~(state.sounding & (self.high - state.silent_steps < state.bar_steps_left))
        if self.low is not None:
            # Tight: the steps left are just enough for the silence still needed and the note-ons
            # the rules still need, so no step may be spent holding a note, and only needed notes start.
            # When the silence still needed fills every step left, the steps left are all silent.
            need = self.low - state.silent_steps
            tight = need >= state.steps_left - state.notes_needed
            hold = hold & ~(tight & state.sounding)
            notes = ~((tight & ~state.note_needed_now) | (need >= state.steps_left))
            phrase, phrases = state.step // PHRASE_STEPS, state.length // PHRASE_STEPS
            if self.paced and phrase < phrases - 1:  # keep up with the phrase's share: silent to its end if need be
                due = -(-self.low * (phrase + 1) // phrases)  # ceil: at least that much by the phrase's end
                behind = due - state.silent_steps >= PHRASE_STEPS - state.step % PHRASE_STEPS
                hold = hold & ~(behind & state.sounding)
                notes = notes & ~(behind & ~state.note_needed_now)
                tight = tight | behind  # silence needed now
            if self.paced and state.step % BAR_STEPS == 0 and state.step:  # no tie of a silence not needed
                hold = hold & ~(~state.sounding & ~tight)
        return by_kind(notes, hold, rest)


class Leap(Constraint):
    """The largest interval between successive notes between ``low`` and ``high`` semitones."""

    def __init__(self, low: int | None, high: int | None) -> None:
        self.low, self.high = low, high
        if high is not None:
            last = torch.arange(-1, 128)[:, None]
            self.after = only_notes((last < 0) | ((PITCHES[None, :] - last).abs() <= high))  # (129, 130)

    def notes_needed(self, state):
        if not self.low:
            return None
        short = state.max_leap < self.low
        return torch.where(state.last_pitch >= 0, 1, 2) * short, short

    def allowed(self, state):
        # the classes allowed after each last pitch (row 0: no note yet), looked up by the row's last pitch
        mask = self.after[state.last_pitch + 1] if self.high is not None else everything(state.n)
        if self.low:
            has_last = state.last_pitch >= 0
            distance = (PITCHES[None, :] - state.last_pitch[:, None]).abs()  # (N, 128)
            short = state.max_leap < self.low
            notes_needed = torch.where(has_last, 1, 2) * short  # a leap needs two notes
            force_note(mask, short & (notes_needed >= state.steps_left))
            if state.steps_left == 1:  # the last chance: this note must make the leap
                mask[:, :128] &= ~(short & has_last)[:, None] | (distance >= self.low)
        return mask


class DistinctPitches(Constraint):
    def __init__(self, low: int | None, high: int | None) -> None:
        self.low, self.high = low, high

    def notes_needed(self, state):
        if self.low is None:
            return None
        short = (self.low - state.distinct).clamp(min=0)
        return short, short > 0

    def allowed(self, state):
        mask = everything(state.n)
        if self.high is not None:  # at the limit: only pitches already used
            full = state.distinct >= self.high
            mask[:, :128] &= ~full[:, None] | state.used
        if self.low is not None:
            short = self.low - state.distinct >= state.steps_left
            force_note(mask, short)
            mask[:, :128] &= ~short[:, None] | ~state.used
        return mask


class Edge(Constraint):
    """start / end: the first or last note on a pitch class (N,), and at least one note."""

    def __init__(self, pc: np.ndarray, first: bool) -> None:
        self.pc = torch.as_tensor(np.asarray(pc), dtype=torch.long)
        self.on_pc = only_notes(PITCHES[None, :] % 12 == self.pc[:, None])
        self.first = first

    notes_needed = staticmethod(_one_note)

    def allowed(self, state):
        mask = _needs_a_note(everything(state.n), state)
        if self.first:  # until the first note: note-ons only on the pitch class
            return mask & (self.on_pc | (state.onsets > 0)[:, None])
        # A note on the last step, or the last note other rules allow, is the last note.
        maybe_last = (state.notes_left <= 1) | (state.steps_left == 1)
        if state.steps_left == 1:
            force_note(mask, ~((state.last_pitch >= 0) & (state.last_pitch % 12 == self.pc)))
        return mask & (self.on_pc | ~maybe_last[:, None])


def whole_bounds(low, high) -> tuple[int | None, int | None]:
    """Bounds on a whole count (semitones, pitches) as ints."""
    return (None if low is None else int(at_least(low)), None if high is None else int(at_most(high)))


def silent_step_bounds(low, high, steps: int = STEPS) -> tuple[int | None, int | None]:
    """A share of the steps (0..1; 256, or a scoped rule's) -> whole step counts."""
    return (None if low is None else int(at_least(low * steps)), None if high is None else int(at_most(high * steps)))


class Scoped(Constraint):
    """A rule scoped to bars (steps ``start`` to ``end``): its constraint sees a state of its own
    that holds only those steps, as its exact test sees only their tokens. A note held into the
    span from before is silence there, for both."""

    def __init__(self, inner: Constraint, start: int, end: int) -> None:
        self.inner, self.start, self.end = inner, start, end
        self.sub: DecodeState | None = None

    def _sync(self, state: DecodeState) -> DecodeState:
        if self.sub is None:
            self.sub = DecodeState(state.n, state.tokens.device, self.end - self.start)
        while self.sub.step < min(state.step, self.end) - self.start:  # what was written in the span
            self.sub.update(state.tokens[:, self.start + self.sub.step])
        if self.start <= state.step < self.end:
            own = self.inner.notes_needed(self.sub)
            zero = torch.zeros_like(self.sub.onsets)
            self.sub.notes_needed, self.sub.note_needed_now = own if own is not None else (zero, zero.bool())
            limit = self.inner.notes_left(self.sub)
            self.sub.notes_left = state.notes_left if limit is None else torch.minimum(limit, state.notes_left)
        return self.sub

    def notes_needed(self, state):
        if state.step >= self.end:
            return None
        need = self.inner.notes_needed(self._sync(state))
        if need is None or state.step < self.start:  # needed later, in the span: none of them now
            return None if need is None else (need[0], torch.zeros_like(need[1]))
        return need

    def notes_left(self, state):
        if self.end < STEPS or state.step < self.start:  # the steps after (or before) it are free
            return None
        return self.inner.notes_left(self._sync(state))

    def allowed(self, state):
        if not self.start <= state.step < self.end:
            return None
        return self.inner.allowed(self._sync(state))

    def by_bar(self, n, length=STEPS):
        if self.start % BAR_STEPS or self.end % BAR_STEPS:
            return None
        inner = self.inner.by_bar(n, self.end - self.start)
        if inner is None:
            return None
        first, last = self.start // BAR_STEPS, self.end // BAR_STEPS  # the bars the rule sees, as a slice
        table = low = high = None
        if inner.table is not None:  # everything allowed outside the span
            table = torch.ones(len(inner.table), length, NUM_CLASSES, dtype=torch.bool)
            table[:, self.start : self.end] = inner.table
        if inner.low is not None:
            low = torch.zeros(len(inner.low), length // BAR_STEPS, dtype=torch.long)
            low[:, first:last] = inner.low
        if inner.high is not None:
            high = torch.full((len(inner.high), length // BAR_STEPS), BAR_STEPS, dtype=torch.long)
            high[:, first:last] = inner.high
        need = None if inner.needs_note is None else (inner.needs_note[0] + first, inner.needs_note[1] + first)
        return ByBar(table, low, high, need)


class ChordTones(Constraint):
    """chords: a note starting on beat 1 or 3 (every 8th step) is a tone of the chord sounding then;
    ``tones`` (halves, 12) bool, one row per half bar of the steps the rule sees."""

    def __init__(self, n: int, tones: np.ndarray) -> None:
        pcs = torch.from_numpy(np.array(tones, dtype=bool))  # a writable copy
        self.halves = only_notes(pcs[:, PITCHES % 12])  # (halves, 130)
        self.masks = self.halves[:, None, :].expand(-1, n, -1)  # (halves, N, 130)

    def allowed(self, state):
        return self.masks[state.step // 8] if state.step % 8 == 0 else None

    def by_bar(self, n, length=STEPS):
        table = torch.ones(1, length, NUM_CLASSES, dtype=torch.bool)
        table[0, ::8] = self.halves[: length // 8]
        return ByBar(table=table)


class Climax(Constraint):
    """climax: the highest note lies in steps ``start`` to ``end``: in the span, a note above every
    note before it (forced at step ``last``, the span's last or the last that a form does not copy,
    if none came); after it, none that high. Before the span, notes stay below ``ceiling`` (N,),
    the highest pitch the key and range allow, so that the climax has room."""

    def __init__(
        self, n: int, start: int, end: int, ceiling: np.ndarray | None = None, last: int | None = None
    ) -> None:
        self.start, self.end = start, end
        self.last = end - 1 if last is None else last
        self.before = torch.full((n,), -1)
        self.peak: torch.Tensor | None = None
        top = torch.full((n,), 128) if ceiling is None else torch.as_tensor(np.asarray(ceiling), dtype=torch.long)
        self.below_top = only_notes(PITCHES[None, :] < top[:, None])

    def _reached(self, state) -> torch.Tensor:
        if state.step <= self.start:  # the highest so far, as the span begins
            self.before = state.highest.clone()
        return state.highest > self.before

    def notes_needed(self, state):
        if state.step >= self.end:
            return None
        short = ~self._reached(state)
        return short.long(), short & (state.step >= self.start)

    def allowed(self, state):
        reached = self._reached(state)
        if state.step < self.start:
            return self.below_top
        mask = everything(state.n)
        if state.step < self.end:
            if state.step == self.last:  # the last chance: the climax comes now
                force_note(mask, ~reached)
                mask[:, :128] &= reached[:, None] | (PITCHES[None] > self.before[:, None])
            return mask
        if self.peak is None:
            self.peak = state.highest.clone()
        mask[:, :128] &= PITCHES[None] < self.peak[:, None]
        return mask


class Form(Constraint):
    """form: phrases of ``length`` steps; a phrase copies the tokens of the first earlier phrase
    with its label (``copy[j]``), or the onsets of the first with its letter (``rhythm[j]``); at its
    last step it may not complete a copy of an earlier phrase of another letter (``differ[j]``)."""

    def __init__(self, length: int, copy: list, rhythm: list, differ: list) -> None:
        self.length, self.copy, self.rhythm, self.differ = length, copy, rhythm, differ

    def allowed(self, state):
        j, o = divmod(state.step, self.length)
        src = self.copy[j]
        if src is not None:
            mask = torch.zeros(state.n, NUM_CLASSES, dtype=torch.bool)
            mask[torch.arange(state.n), state.tokens[:, src * self.length + o]] = True
            return mask
        mask = everything(state.n)
        if self.rhythm[j] is not None:
            onset = state.tokens[:, self.rhythm[j] * self.length + o] < 128
            force_note(mask, onset)
            forbid_notes(mask, ~onset)
        if o == self.length - 1:
            now = state.tokens[:, j * self.length : state.step]
            for k in self.differ[j]:
                same = (now == state.tokens[:, k * self.length : k * self.length + o]).all(1)
                rows = same.nonzero().squeeze(1)
                mask[rows, state.tokens[rows, k * self.length + o]] = False
        return mask
