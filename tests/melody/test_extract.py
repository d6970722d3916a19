"""Window extraction on MIDI files the tests write and on real music21 corpus tunes."""

from __future__ import annotations

import numpy as np
import pytest

from melody_lc.melody import Melody
from melody_lc.melody.extract import (
    NOTE_DTYPE,
    ExtractionConfig,
    compatible_meter,
    extract_windows,
    quantized_notes,
    skyline,
)
from melody_lc.melody.sources import read_midi_file
from tests.conftest import scale_notes, write_midi


def _notes(*triples):
    arr = np.zeros(len(triples), dtype=NOTE_DTYPE)
    for i, (p, s, e) in enumerate(triples):
        arr[i] = (p, s, e, 0, False)
    return arr


def test_skyline_keeps_the_highest_line():
    # a chord at 0 (top 67 kept), a lower note under a sounding higher one (dropped),
    # a higher note over a lower one (takes over), then silence (the lower note is not resumed)
    tokens = skyline(
        _notes((60, 0, 4), (64, 0, 4), (67, 0, 4), (72, 4, 12), (55, 6, 8), (50, 12, 20), (74, 14, 16)), 32
    )
    m = Melody(np.concatenate([tokens, np.full(224, 128)]))
    assert m.notes() == [(67, 0, 4), (72, 4, 12), (50, 12, 14), (74, 14, 16)]


def test_meters_that_fill_16_step_bars():
    assert all(compatible_meter(*m) for m in [(4, 4), (2, 4), (2, 2), (4, 8), (8, 8), (1, 4)])
    assert not any(compatible_meter(*m) for m in [(3, 4), (6, 8), (9, 8), (5, 4), (3, 8), (12, 8), (7, 8)])


def test_quantization_matches_note_seq_on_constant_tempo():
    from note_seq import sequences_lib
    from note_seq.protobuf import music_pb2

    rng = np.random.default_rng(3)
    seq = music_pb2.NoteSequence()
    seq.tempos.add(time=0, qpm=137.0)
    for _ in range(300):
        start = float(rng.uniform(0, 60))
        seq.notes.add(pitch=60, start_time=start, end_time=start + float(rng.uniform(0.01, 2)), velocity=80)
    ours = quantized_notes(seq)
    theirs = sequences_lib.quantize_note_sequence(seq, 4)
    assert ours["start"].tolist() == [n.quantized_start_step for n in theirs.notes]
    assert ours["end"].tolist() == [n.quantized_end_step for n in theirs.notes]


def test_windows_from_a_multitrack_midi_file_with_tempo_change(tmp_path):
    melody = scale_notes(20)
    bass = [(36 + (k % 5), k * 8, k * 8 + 8, 80) for k in range(40)]
    drums = [(36, k * 4, k * 4 + 1, 100) for k in range(80)]
    path = write_midi(
        tmp_path / "song.mid",
        [melody, bass, drums],
        drum_tracks=(2,),
        tempos=((0, 500000), (100, 400000), (201, 650000)),
    )  # two tempo changes, one mid-bar
    seq = read_midi_file(path)
    tw = extract_windows(seq, "song.mid")
    # 20 bars of melody -> 5 windows; the bass is 20 bars too -> 5 more; drums are ignored.
    assert tw.windows.shape == (10, 256)
    first = Melody(tw.windows[0])
    assert first.notes()[:3] == [(60, 0, 2), (62, 2, 4), (64, 4, 6)]  # on the grid despite the tempo changes
    assert all(n[1] % 2 == 0 and n[2] - n[1] == 2 for n in first.notes())
    bass_windows = [Melody(w) for w in tw.windows if Melody(w).pitch_range[1] < 48]
    assert len(bass_windows) == 5 and bass_windows[0].notes()[0] == (36, 0, 8)
    # one-bar stride: window k starts k bars later in the melody
    second = Melody(tw.windows[1])
    assert second.notes()[0] == (melody[8][0], 0, 2)
    assert tw.meters == ["4/4"] and tw.key.startswith("C major")


def test_other_meters_are_left_out_unless_asked(tmp_path):
    notes = scale_notes(24)
    path = write_midi(tmp_path / "waltz.mid", [notes], time_signatures=((0, 3, 4),))
    seq = read_midi_file(path)
    tw = extract_windows(seq, "waltz")
    assert len(tw.windows) == 0 and tw.skipped_meters == ["3/4"]
    tw_all = extract_windows(seq, "waltz", ExtractionConfig(all_meters=True))
    assert len(tw_all.windows) + tw_all.dropped_duplicate == 24 - 16 + 1  # the notes span 24 sixteen-step bars


def test_mixed_meter_file_uses_only_the_compatible_part(tmp_path):
    notes = scale_notes(40)
    # 18 bars of 4/4 (288 steps), then 3/4 from step 288 on
    path = write_midi(tmp_path / "mixed.mid", [notes], time_signatures=((0, 4, 4), (288, 3, 4)))
    tw = extract_windows(read_midi_file(path), "mixed")
    assert tw.meters == ["3/4", "4/4"] and tw.skipped_meters == ["3/4"]
    assert len(tw.windows) == 3  # windows starting at bars 0, 1, 2 fit in the 18 bars of 4/4


def test_time_signature_after_the_last_note(tmp_path):
    path = write_midi(tmp_path / "late.mid", [scale_notes(17)], time_signatures=((0, 4, 4), (16 * 30, 3, 4)))
    tw = extract_windows(read_midi_file(path), "late")
    assert len(tw.windows) == 2 and tw.meters == ["4/4"]  # a signature after the music is no meter of it


def test_nearly_empty_windows_are_dropped(tmp_path):
    sparse = [(60 + k % 3, k * 32, k * 32 + 4, 90) for k in range(10)]  # one note every two bars
    path = write_midi(tmp_path / "sparse.mid", [sparse + [(72, 400, 404, 90)]])
    tw = extract_windows(read_midi_file(path), "sparse")
    assert len(tw.windows) == 0 and tw.dropped_empty > 0


def test_repeated_windows_within_a_tune_are_removed(tmp_path):
    phrase = [(60 + (k % 4) * 2, k * 4, k * 4 + 4, 90) for k in range(4)]  # one bar, repeated 24 times
    notes = [(p, s + 16 * b, e + 16 * b, v) for b in range(24) for p, s, e, v in phrase]
    tw = extract_windows(read_midi_file(write_midi(tmp_path / "loop.mid", [notes])), "loop")
    assert len(tw.windows) == 1 and tw.dropped_duplicate == 8


def test_real_corpus_tune_gives_the_expected_windows():
    """music21's airdsAirs book1 tune 1: 2/2 with a one-quarter-and-a-half pickup, 32 bars played."""
    from music21 import corpus

    from melody_lc.melody.sources import CorpusTune, parse_corpus_tune

    path = next(p for p in corpus.getPaths() if p.name == "book1.abc" and "airdsAirs" in p.parts)
    ((name, seq),) = parse_corpus_tune(CorpusTune(str(path), "airdsAirs", 1))
    tw = extract_windows(seq, name)
    notes = quantized_notes(seq)
    bars = -(-int(notes["end"].max()) // 16)
    assert tw.meters == ["2/2"] and tw.key == "G major"
    assert len(tw.windows) + tw.dropped_duplicate + tw.dropped_empty == bars - 16 + 1
    first = Melody(tw.windows[0])
    # the pickup (A4 eighth, G4 eighth) lands at the end of the padded first bar
    assert first.notes()[:2] == [(69, 12, 14), (67, 14, 16)]
    # every window is a real slice of the tune's line, one bar apart
    line = skyline(notes, bars * 16)
    from melody_lc.melody.encoding import canonical

    assert np.array_equal(tw.windows[1], canonical(line[16:272]))


def test_bach_chorale_soprano(tmp_path):
    from music21 import converter, corpus, note, stream

    from melody_lc.melody.sources import CorpusTune, SkipTune, parse_corpus_tune

    path = next(p for p in corpus.getPaths() if p.name == "bwv26.6.mxl")
    ((_, seq),) = parse_corpus_tune(CorpusTune(str(path), "bach"))
    soprano = converter.parse(str(path), forceSource=True).parts[0].stripTies().flatten().pitches
    assert quantized_notes(seq)["pitch"][:12].tolist() == [p.midi for p in soprano[:12]]

    duet = stream.Score(
        [stream.Part([note.Note("C5", quarterLength=4)]), stream.Part([note.Note("C3", quarterLength=4)])]
    )
    duet_path = duet.write("musicxml", fp=tmp_path / "duet.musicxml")
    with pytest.raises(SkipTune, match="not a four-part chorale"):
        parse_corpus_tune(CorpusTune(str(duet_path), "bach"))


def test_later_signature_at_the_same_step_wins_and_merges():
    from note_seq.protobuf import music_pb2

    from melody_lc.melody.extract import meter_segments

    seq = music_pb2.NoteSequence()
    seq.tempos.add(time=0, qpm=120)
    for t, n, d in [(0, 4, 4), (8.0, 3, 4), (8.0, 4, 4)]:
        seq.time_signatures.add(time=t, numerator=n, denominator=d)
    assert meter_segments(seq, 400) == [(0, 400, 4, 4)]


def test_time_before_the_first_tempo_event_is_120_qpm():
    from note_seq.protobuf import music_pb2

    seq = music_pb2.NoteSequence()
    seq.tempos.add(time=2.0, qpm=60)
    seq.notes.add(pitch=60, start_time=2.0, end_time=3.0)
    notes = quantized_notes(seq)
    assert (notes["start"][0], notes["end"][0]) == (16, 20)  # 2 s at 120 qpm = 4 quarters; then 1 s = 1 quarter


def test_absurdly_long_file_is_refused(tmp_path):
    from melody_lc.melody import MelodyError

    path = write_midi(tmp_path / "long.mid", [scale_notes(2) + [(60, 300_000, 300_004, 90)]])
    with pytest.raises(MelodyError, match="longer than"):
        extract_windows(read_midi_file(path), "long")


def test_chorale_soprano_is_found_behind_instrumental_parts():
    from music21 import converter, corpus

    from melody_lc.melody.sources import CorpusTune, parse_corpus_tune

    path = next(p for p in corpus.getPaths() if p.name == "bwv1.6.mxl")  # parts: Horn 2, Soprano, Alto, ...
    ((_, seq),) = parse_corpus_tune(CorpusTune(str(path), "bach"))
    score = converter.parse(str(path), forceSource=True)
    soprano = next(p for p in score.parts if p.partName == "Soprano").stripTies().flatten().pitches
    assert quantized_notes(seq)["pitch"][:12].tolist() == [p.midi for p in soprano[:12]]


def test_abc_meter_changes_keep_their_times(tmp_path):
    from melody_lc.melody.extract import meter_segments
    from melody_lc.melody.sources import CorpusTune, parse_corpus_tune

    abc = tmp_path / "meters.abc"
    bars_24 = " | ".join(["G2 A2"] * 20)
    abc.write_text(f"X:1\nT:meters\nM:2/4\nL:1/8\nK:G\n{bars_24} | [M:3/4] B2 c2 d2 | [M:2/4] e2 f2 | g2 a2 |]\n")
    ((_, seq),) = parse_corpus_tune(CorpusTune(str(abc), "test"))
    first = min(seq.time_signatures, key=lambda ts: ts.time)
    assert (first.time, first.numerator, first.denominator) == (0.0, 2, 4)
    segs = meter_segments(seq, int(quantized_notes(seq)["end"].max()))
    # the opening 2/4 holds from step 0 through the first 20 bars (music21 itself splits the 3/4 bar
    # into 2/4 + 1/4, so the first change comes one 2/4 bar later)
    assert segs[0][0] == 0 and segs[0][2:] == (2, 4) and segs[0][1] >= 20 * 8


# --------------------------------------------------------------------------------------------------
# The MIDI reader (symusic) against note_seq's (pretty_midi), on real files and on overlapping notes
# --------------------------------------------------------------------------------------------------
def _same_windows(path) -> bool:
    from melody_lc.melody.noteseq import note_sequence_from_midi
    from melody_lc.melody.sources import parse_midi_bytes

    data = path.read_bytes()
    ours, theirs = (
        extract_windows(parse_midi_bytes(data), path.name),
        extract_windows(note_sequence_from_midi(data), path.name),
    )
    return np.array_equal(ours.windows, theirs.windows) and (ours.meters, ours.key, ours.content_key) == (
        theirs.meters,
        theirs.key,
        theirs.content_key,
    )


def test_real_midi_files_give_the_windows_note_seq_gave():
    import warnings
    from pathlib import Path

    import music21

    files = sorted(Path(music21.__file__).parent.rglob("*.mid"))  # real MIDI files of many kinds
    assert len(files) >= 20
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = [f.name for f in files if _same_windows(f)]
    # test04.mid has notes sounding across program changes, which pretty_midi files under the
    # program of their note-off (see benchmarks/midi_reading.py)
    assert set(f.name for f in files) - set(same) <= {"test04.mid"}
    assert len(same) >= len(files) - 1


def test_overlapping_notes_of_one_pitch_read_as_before(tmp_path):
    import mido

    from melody_lc.melody.sources import parse_midi_bytes

    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    # C5 struck again while sounding; its first note-off ends both (as pretty_midi and most DAWs
    # read it), the second is left over; then a scale so that windows are cut
    events = [
        mido.Message("note_on", note=72, velocity=80, time=0),
        mido.Message("note_on", note=72, velocity=80, time=240),
        mido.Message("note_off", note=72, velocity=0, time=240),
        mido.Message("note_off", note=72, velocity=0, time=240),
    ]
    for k in range(70):
        events += [
            mido.Message("note_on", note=60 + k % 12, velocity=80, time=0),
            mido.Message("note_off", note=60 + k % 12, velocity=0, time=480),
        ]
    track.extend(events)
    path = tmp_path / "overlap.mid"
    mid.save(str(path))
    notes = quantized_notes(parse_midi_bytes(path.read_bytes()))
    assert [(int(n["pitch"]), int(n["start"]), int(n["end"])) for n in notes[:2]] == [(72, 0, 4), (72, 2, 4)]
    assert _same_windows(path)


def test_note_sequences_need_the_extra(monkeypatch):
    import sys

    from melody_lc.melody import MelodyError

    monkeypatch.setitem(sys.modules, "note_seq", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "note_seq.protobuf", None)
    monkeypatch.setitem(sys.modules, "note_seq.protobuf.music_pb2", None)
    with pytest.raises(MelodyError, match=r"pip install 'melody-lc\[note-seq\]'"):
        Melody.from_notes([(60, 0, 4)]).to_note_sequence()
