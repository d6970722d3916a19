"""melody-lc's interchange with the Magenta ecosystem: note_seq ``NoteSequence`` <-> Piece and Melody.

Needs the extra: ``pip install 'melody-lc[note-seq]'`` (note_seq pulls in librosa, numba, pandas
and more, which nothing else in melody-lc needs).
"""

from __future__ import annotations

import importlib

import numpy as np

from melody_lc.melody.encoding import STEPS, STEPS_PER_QUARTER
from melody_lc.melody.errors import MelodyError
from melody_lc.melody.piece import MAJOR, MINOR, Piece

# note_seq KeySignature modes that name a major or minor key; the other church modes are left out.
_NS_MODES = {0: MAJOR, 1: MINOR}


def note_seq_module(name: str = "note_seq"):
    """Import note_seq (or one of its modules), or say plainly how to get it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise MelodyError(
            "NoteSequence conversions need the note-seq extra: pip install 'melody-lc[note-seq]'"
        ) from None


def seconds_to_quarters(times, sequence) -> np.ndarray:
    """Seconds -> quarter notes, following the sequence's tempo changes (120 qpm if it has none)."""
    tempos = sorted(((t.time, t.qpm) for t in sequence.tempos), key=lambda x: x[0])
    if not tempos or tempos[0][0] > 0:
        tempos.insert(0, (0.0, 120.0))  # MIDI's default tempo until the first tempo event
    t0 = np.array([t for t, _ in tempos])
    qpm = np.array([q for _, q in tempos])
    q0 = np.concatenate([[0.0], np.cumsum(np.diff(t0) * qpm[:-1] / 60.0)])
    times = np.asarray(times, dtype=np.float64)
    i = np.searchsorted(t0, times, side="right") - 1
    return q0[i] + (times - t0[i]) * qpm[i] / 60.0


def piece_from_note_sequence(sequence) -> Piece:
    """A NoteSequence as a Piece. A sequence quantized at 4 steps per quarter keeps its quantized
    steps; otherwise times are converted along its tempo map."""
    notes = sequence.notes
    if sequence.quantization_info.steps_per_quarter == STEPS_PER_QUARTER:
        start = np.array([x.quantized_start_step for x in notes], dtype=np.float64) / STEPS_PER_QUARTER
        end = np.array([x.quantized_end_step for x in notes], dtype=np.float64) / STEPS_PER_QUARTER
    else:
        start = seconds_to_quarters([x.start_time for x in notes], sequence)
        end = seconds_to_quarters([x.end_time for x in notes], sequence)
    sigs = [
        (float(q), ts.numerator, ts.denominator)
        for q, ts in zip(
            seconds_to_quarters([ts.time for ts in sequence.time_signatures], sequence), sequence.time_signatures
        )
    ]
    keys = [
        (float(q), ks.key % 12, _NS_MODES[ks.mode])
        for q, ks in zip(
            seconds_to_quarters([ks.time for ks in sequence.key_signatures], sequence), sequence.key_signatures
        )
        if ks.mode in _NS_MODES
    ]
    return Piece.from_notes(
        [x.pitch for x in notes],
        start,
        end,
        [x.instrument for x in notes],
        [x.is_drum for x in notes],
        time_signatures=sigs,
        keys=keys,
    )


def melody_to_note_sequence(melody, qpm: float = 120.0, velocity: int = 80, program: int = 0):
    """A quantized NoteSequence (4 steps per quarter) of a Melody, with real times at ``qpm``."""
    seq = note_seq_module("note_seq.protobuf.music_pb2").NoteSequence()
    seq.ticks_per_quarter = 220
    seq.tempos.add(time=0.0, qpm=qpm)
    seq.time_signatures.add(time=0.0, numerator=4, denominator=4)
    seq.quantization_info.steps_per_quarter = STEPS_PER_QUARTER
    step_seconds = 60.0 / qpm / STEPS_PER_QUARTER
    for pitch, start, end in melody.notes():
        seq.notes.add(
            pitch=pitch,
            velocity=velocity,
            program=program,
            instrument=0,
            start_time=start * step_seconds,
            end_time=end * step_seconds,
            quantized_start_step=start,
            quantized_end_step=end,
        )
    seq.total_time = STEPS * step_seconds
    seq.total_quantized_steps = STEPS
    return seq


def note_sequence_from_midi(data: bytes):
    """A MIDI file's bytes as a NoteSequence, parsed as note_seq does (pretty_midi underneath)."""
    import io

    import pretty_midi

    midi_io = note_seq_module("note_seq.midi_io")
    return midi_io.midi_to_note_sequence(pretty_midi.PrettyMIDI(io.BytesIO(data)))
