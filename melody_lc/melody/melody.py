"""The :class:`Melody` value type and its exact conversions (Piece, NoteSequence, MIDI file, piano roll)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from melody_lc.melody import metrics
from melody_lc.melody.encoding import (
    BAR_STEPS,
    HOLD,
    NUM_BARS,
    NUM_CLASSES,
    NUM_PITCHES,
    REST,
    STEPS,
    STEPS_PER_QUARTER,
    canonical,
)
from melody_lc.melody.errors import MelodyLengthError, MelodyTokenError, PolyphonicMelodyError

if TYPE_CHECKING:  # heavy imports only for type checkers
    import pretty_midi
    from note_seq import NoteSequence


@dataclass(frozen=True, eq=False)
class Melody:
    """A monophonic 16-bar melody: 256 sixteenth-note steps, each one of 130 classes.

    Encoding (the paper's, see :mod:`melody_lc.melody.encoding`):

    ==========  ===========================================================
    token       meaning at this step
    ==========  ===========================================================
    0 .. 127    a note of that MIDI pitch starts (ending any previous note)
    128 HOLD    nothing changes: the note keeps sounding, or silence goes on
    129 REST    the sounding note stops; silence begins
    ==========  ===========================================================

    Bars are 16 steps (4/4 at 4 steps per quarter note); a melody is exactly 16 bars. Tokens are
    stored canonically (silence begins with one REST, also at step 0, then HOLDs), so two melodies
    are equal exactly when they sound the same. Instances are immutable; ``tokens`` is a read-only
    uint8 array of shape (256,).
    """

    tokens: np.ndarray

    def __init__(self, tokens) -> None:
        arr = np.asarray(tokens)
        if arr.ndim != 1 or arr.shape[0] != STEPS:
            raise MelodyLengthError(f"a melody has {STEPS} steps (16 bars x 16), got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.mod(arr, 1) == 0):
                raise MelodyTokenError("melody tokens must be integers")
        bad = (arr < 0) | (arr >= NUM_CLASSES)
        if bad.any():
            i = int(np.argmax(bad))
            raise MelodyTokenError(
                f"token {int(arr[i])} at step {i} is outside 0..{NUM_CLASSES - 1} (0-127 note-on, 128 hold, 129 rest)"
            )
        canon = canonical(arr.astype(np.int16))
        canon.setflags(write=False)
        object.__setattr__(self, "tokens", canon)

    # -- value semantics -------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Melody) and np.array_equal(self.tokens, other.tokens)

    def __hash__(self) -> int:
        return hash(self.tokens.tobytes())

    def __repr__(self) -> str:
        return f"Melody({self.num_notes} notes, pitches {self.pitch_range})"

    # -- notes -----------------------------------------------------------------------------------
    def notes(self) -> list[tuple[int, int, int]]:
        """The notes as ``(pitch, start_step, end_step)``, in time order; end is exclusive."""
        t = self.tokens
        events = np.flatnonzero(t != HOLD)  # note-ons and the RESTs that end notes
        ends = np.append(events, STEPS)
        return [(int(t[s]), int(s), int(ends[k + 1])) for k, s in enumerate(events) if t[s] < NUM_PITCHES]

    @classmethod
    def from_notes(cls, notes) -> Melody:
        """Build from ``(pitch, start_step, end_step)`` triples that do not overlap.

        Raises :class:`PolyphonicMelodyError` when two notes overlap and
        :class:`MelodyTokenError` for a pitch outside 0-127 or a note outside the 256 steps.
        """
        tokens = np.full(STEPS, HOLD, dtype=np.int16)
        tokens[0] = REST
        last_end = 0
        for pitch, start, end in sorted(notes, key=lambda n: n[1]):
            if not 0 <= pitch <= 127:
                raise MelodyTokenError(f"pitch {pitch} is outside MIDI's 0-127")
            if not 0 <= start < end <= STEPS:
                raise MelodyTokenError(f"note {pitch} spans steps {start}..{end}, outside 0..{STEPS}")
            if start < last_end:
                raise PolyphonicMelodyError(f"note {pitch} at step {start} overlaps the previous note")
            if last_end < start:
                tokens[last_end] = REST
            tokens[start] = pitch
            tokens[start + 1 : end] = HOLD
            if end < STEPS:
                tokens[end] = REST
            last_end = end
        return cls(tokens)

    # -- Piece and NoteSequence ---------------------------------------------------------------
    @classmethod
    def from_piece(cls, piece, start_step: int = 0) -> Melody:
        """The 16 bars from ``start_step`` of a :class:`~melody_lc.melody.piece.Piece` (or a
        NoteSequence), quantized to 4 steps per quarter and made monophonic.

        Drum notes are ignored; where notes overlap the highest pitch is kept (see
        :func:`melody_lc.melody.extract.skyline`). Notes that run past the window are cut at its end.
        """
        from melody_lc.melody.extract import quantized_notes, skyline

        notes = quantized_notes(piece)
        notes = notes[~notes["is_drum"]]
        end = start_step + STEPS
        tokens = skyline(notes, total_steps=max(end, int(notes["end"].max(initial=0))))
        return cls(tokens[start_step:end])

    def to_note_sequence(self, qpm: float = 120.0, velocity: int = 80, program: int = 0) -> NoteSequence:
        """A quantized note_seq ``NoteSequence`` (4 steps per quarter) with real times at ``qpm``
        (the ``note-seq`` extra)."""
        from melody_lc.melody.noteseq import melody_to_note_sequence

        return melody_to_note_sequence(self, qpm=qpm, velocity=velocity, program=program)

    @classmethod
    def from_note_sequence(cls, sequence: NoteSequence, start_step: int = 0) -> Melody:
        """The 16 bars from ``start_step`` of a NoteSequence (quantized or not; the ``note-seq``
        extra), as :meth:`from_piece`: an unquantized one is quantized along its tempo map."""
        return cls.from_piece(sequence, start_step)

    # -- MIDI files ------------------------------------------------------------------------------
    def to_pretty_midi(
        self, qpm: float = 120.0, program: int = 0, velocity: int = 80, chords: list[str | None] | None = None
    ) -> pretty_midi.PrettyMIDI:
        """A ``pretty_midi.PrettyMIDI`` with one instrument (GM ``program``, 0-127) at ``qpm``, and
        with ``chords`` (a chord symbol or None per half bar, as the rules' chords say) a second
        instrument, on its own channel, that plays them as block chords below the melody."""
        import pretty_midi

        if not 0 <= program <= 127:
            raise MelodyTokenError(f"GM program {program} is outside 0-127")
        pm = pretty_midi.PrettyMIDI(initial_tempo=qpm)
        pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
        inst = pretty_midi.Instrument(program=program, name="melody-lc")
        step_seconds = 60.0 / qpm / STEPS_PER_QUARTER
        for pitch, start, end in self.notes():
            inst.notes.append(pretty_midi.Note(velocity, pitch, start * step_seconds, end * step_seconds))
        pm.instruments.append(inst)
        if chords and any(chords):
            pm.instruments.append(_chord_track(chords, step_seconds, max(velocity - 25, 1)))
        return pm

    def to_midi_file(
        self,
        path: str | os.PathLike,
        qpm: float = 120.0,
        program: int = 0,
        velocity: int = 80,
        chords: list[str | None] | None = None,
    ) -> None:
        """Write a .mid file atomically (temp file in the same directory, then rename)."""
        from melody_lc.fileio import atomic_path

        with atomic_path(path) as tmp:
            self.to_pretty_midi(qpm=qpm, program=program, velocity=velocity, chords=chords).write(str(tmp))

    @classmethod
    def from_midi_file(cls, path: str | os.PathLike, start_step: int = 0) -> Melody:
        """Read the 16 bars from ``start_step`` of a MIDI file (parsed with symusic).

        Raises :class:`~melody_lc.melody.errors.BadMidiFileError` for a file that is not valid MIDI.
        """
        from melody_lc.melody.sources import read_midi_file

        return cls.from_piece(read_midi_file(path), start_step=start_step)

    # -- piano roll ------------------------------------------------------------------------------
    def to_pianoroll(self) -> np.ndarray:
        """``(128, 256)`` uint8 piano roll (pitch x step, as pretty_midi): 0 silent, 2 onset, 1 held.

        Marking onsets keeps repeated notes apart, so the conversion is exact both ways.
        """
        roll = np.zeros((128, STEPS), dtype=np.uint8)
        for pitch, start, end in self.notes():
            roll[pitch, start:end] = 1
            roll[pitch, start] = 2
        return roll

    @classmethod
    def from_pianoroll(cls, roll) -> Melody:
        """Inverse of :meth:`to_pianoroll`. A roll of plain 0/1 (no onset marks) merges runs of a pitch
        into one note. Raises :class:`PolyphonicMelodyError` if two pitches sound at one step."""
        roll = np.asarray(roll)
        if roll.shape != (128, STEPS):
            raise MelodyLengthError(f"a piano roll has shape (128, {STEPS}), got {roll.shape}")
        active = roll > 0
        poly = active.sum(0) > 1
        if poly.any():
            raise PolyphonicMelodyError(
                f"{int(active[:, int(np.argmax(poly))].sum())} pitches sound at step {int(np.argmax(poly))}"
            )
        pitch = np.where(active.any(0), active.argmax(0), -1)
        prev = np.concatenate([[-1], pitch[:-1]])
        onset = (pitch >= 0) & ((pitch != prev) | (roll[np.maximum(pitch, 0), np.arange(STEPS)] == 2))
        tokens = np.where(onset, pitch, np.where((pitch < 0) & (prev >= 0), REST, HOLD))
        return cls(tokens)

    # -- metrics (see melody_lc.melody.metrics for batches) --------------------------------------
    @property
    def num_notes(self) -> int:
        return int(metrics.note_count(self.tokens))

    def notes_per_bar(self) -> np.ndarray:
        return metrics.notes_per_bar(self.tokens)

    def pitch_class_histogram(self, weight: str = "count") -> np.ndarray:
        return metrics.pitch_class_histogram(self.tokens, weight)

    @property
    def pitch_range(self) -> tuple[int, int]:
        low, high = metrics.pitch_range(self.tokens)
        return int(low), int(high)

    def intervals(self) -> np.ndarray:
        steps, mask = metrics.intervals(self.tokens)
        return steps[mask]

    @property
    def rest_fraction(self) -> float:
        return float(metrics.rest_fraction(self.tokens))

    def transpose(self, semitones: int) -> Melody:
        """The melody moved by ``semitones``; raises MelodyTokenError if a pitch leaves 0-127."""
        t = self.tokens.astype(np.int16)
        is_note = t < NUM_PITCHES
        moved = t[is_note] + semitones
        if moved.size and (moved.min() < 0 or moved.max() > 127):
            raise MelodyTokenError(f"transposing by {semitones} takes pitches outside 0-127")
        t[is_note] = moved
        return Melody(t)

    def bars(self) -> np.ndarray:
        """``(16, 16)`` view of the tokens, one row per bar."""
        return self.tokens.reshape(NUM_BARS, -1)


def chord_voicing(symbol: str) -> list[int]:
    """MIDI pitches of a chord symbol as block chords below a melody: the chord tones close above
    the root (G2 .. F#3 as the lowest), and a slash chord's bass an octave lower."""
    from melody_lc.melody.pitches import chord

    root, pcs, bass = chord(symbol)
    low = 43 + (root - 7) % 12  # G2 .. F#3
    tones = sorted(low + (pc - root) % 12 for pc in pcs if pc != bass or bass == root)
    return ([low - 12 + (bass - root) % 12] if bass != root else []) + tones


CHORD_PROGRAM = 48  # the chords track's General MIDI program: String Ensemble 1, a pad below the melody


def _chord_track(chords: list[str | None], step_seconds: float, velocity: int):
    import pretty_midi

    inst = pretty_midi.Instrument(program=CHORD_PROGRAM, name="chords")
    half = BAR_STEPS // 2
    k = 0
    while k < len(chords):
        end = k + 1
        while end < len(chords) and chords[end] == chords[k]:  # the same chord goes on sounding
            end += 1
        if chords[k] is not None:
            for pitch in chord_voicing(chords[k]):
                inst.notes.append(pretty_midi.Note(velocity, pitch, k * half * step_seconds, end * half * step_seconds))
        k = end
    return inst
