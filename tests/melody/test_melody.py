"""The Melody value type: validation, canonical spelling, and exact conversions."""

from __future__ import annotations

import numpy as np
import pytest

from melody_lc.melody import (
    HOLD,
    REST,
    Melody,
    MelodyLengthError,
    MelodyTokenError,
    PolyphonicMelodyError,
)
from melody_lc.melody.encoding import canonical
from tests.conftest import random_melody_tokens


def test_rejects_wrong_length_and_bad_tokens():
    with pytest.raises(MelodyLengthError, match="256 steps"):
        Melody(np.full(255, HOLD))
    with pytest.raises(MelodyLengthError):
        Melody(np.full((16, 16), HOLD))
    bad = np.full(256, HOLD)
    bad[7] = 130
    with pytest.raises(MelodyTokenError, match="token 130 at step 7"):
        Melody(bad)
    bad[7] = -1
    with pytest.raises(MelodyTokenError):
        Melody(bad)
    assert issubclass(MelodyTokenError, Exception) and not issubclass(MelodyTokenError, ValueError)


def test_canonical_spelling():
    t = np.full(256, HOLD)
    t[0] = HOLD  # silence at step 0 -> REST
    t[4], t[8], t[9], t[10] = 60, REST, REST, REST  # REST REST REST -> REST HOLD HOLD
    c = canonical(t)
    assert c[0] == REST and c[4] == 60 and c[8] == REST and c[9] == HOLD and c[10] == HOLD
    m = Melody(t)
    assert m.notes() == [(60, 4, 8)]
    assert Melody(c) == m and hash(Melody(c)) == hash(m)
    assert not m.tokens.flags.writeable


def test_notes_and_from_notes_roundtrip():
    notes = [(60, 0, 4), (62, 4, 6), (62, 6, 8), (67, 12, 16), (72, 250, 256)]
    m = Melody.from_notes(notes)
    assert m.notes() == notes
    assert m.tokens[4] == 62 and m.tokens[6] == 62 and m.tokens[8] == REST and m.tokens[9] == HOLD
    with pytest.raises(PolyphonicMelodyError):
        Melody.from_notes([(60, 0, 4), (64, 2, 6)])
    with pytest.raises(MelodyTokenError):
        Melody.from_notes([(128, 0, 4)])
    with pytest.raises(MelodyTokenError):
        Melody.from_notes([(60, 250, 260)])


def test_random_melodies_roundtrip_through_every_format(tmp_path):
    rng = np.random.default_rng(0)
    for k, tokens in enumerate(random_melody_tokens(rng, 25)):
        m = Melody(tokens)
        assert Melody.from_notes(m.notes()) == m
        assert Melody.from_pianoroll(m.to_pianoroll()) == m
        assert Melody.from_note_sequence(m.to_note_sequence()) == m
        path = tmp_path / f"m{k}.mid"
        m.to_midi_file(path, qpm=97.0, program=73)
        assert Melody.from_midi_file(path) == m


def test_midi_file_options_are_written(tmp_path):
    import pretty_midi

    m = Melody.from_notes([(64, 0, 8), (67, 8, 16)])
    path = tmp_path / "opts.mid"
    m.to_midi_file(path, qpm=90.0, program=40, velocity=100)
    pm = pretty_midi.PrettyMIDI(str(path))
    assert pm.get_tempo_changes()[1][0] == pytest.approx(90.0, rel=1e-5)  # MIDI stores whole microseconds
    inst = pm.instruments[0]
    assert inst.program == 40 and [n.velocity for n in inst.notes] == [100, 100]
    assert inst.notes[1].start == pytest.approx(8 * 60 / 90 / 4)
    with pytest.raises(MelodyTokenError):
        m.to_midi_file(tmp_path / "bad.mid", program=200)
    assert not (tmp_path / "bad.mid").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["opts.mid"]  # no temp files left behind


def test_pianoroll_shape_onsets_and_polyphony_error():
    m = Melody.from_notes([(60, 0, 2), (60, 2, 4)])
    roll = m.to_pianoroll()
    assert roll.shape == (128, 256)
    assert roll[60, 0] == 2 and roll[60, 1] == 1 and roll[60, 2] == 2 and roll[60, 4] == 0
    merged = Melody.from_pianoroll(roll > 0)  # without onset marks, the two notes merge
    assert merged.notes() == [(60, 0, 4)]
    roll[64, 1] = 1
    with pytest.raises(PolyphonicMelodyError, match="step 1"):
        Melody.from_pianoroll(roll)
    with pytest.raises(MelodyLengthError):
        Melody.from_pianoroll(np.zeros((128, 100)))


def test_note_sequence_is_quantized_with_real_times():
    m = Melody.from_notes([(60, 4, 8)])
    seq = m.to_note_sequence(qpm=60.0)
    assert seq.quantization_info.steps_per_quarter == 4
    (note,) = seq.notes
    assert (note.quantized_start_step, note.quantized_end_step) == (4, 8)
    assert (note.start_time, note.end_time) == (1.0, 2.0)


def test_transpose_keeps_range():
    m = Melody.from_notes([(60, 0, 4), (120, 4, 8)])
    assert m.transpose(2).notes() == [(62, 0, 4), (122, 4, 8)]
    with pytest.raises(MelodyTokenError):
        m.transpose(8)  # 120 + 8 = 128 is not a pitch
