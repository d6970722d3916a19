"""Rendering melodies to audio with the built-in synth: real generated melodies, real WAV and FLAC
files, and what the audio holds (sound, length, onsets where the notes start)."""

from __future__ import annotations

import numpy as np
import pytest

from melody_lc.audio.files import read_audio
from melody_lc.audio.synth import TAIL_S, Synth, energy_onsets, music_seconds, read_midi_file
from melody_lc.cli import main
from tests.audio.conftest import MARIMBA, matched, note_starts, onset_error
from tests.conftest import run_cli, write_midi

REPO_RULES = "rules/c_major_busy.rules"


def _db(x: np.ndarray) -> float:
    return 10 * np.log10(float(np.mean(np.asarray(x, np.float64) ** 2)) + 1e-20)


def test_rendered_melodies_sound_for_as_long_as_the_music_with_onsets_at_the_notes(melody_files, tmp_path, capsys):
    assert main(["render", *map(str, melody_files), "--out", str(tmp_path)]) == 0
    said = capsys.readouterr().out
    for path in melody_files:
        audio, sr = read_audio(tmp_path / f"{path.stem}.wav")
        assert f"{path.stem}.wav" in said
        assert audio.shape[1] == 2 and sr == 44_100
        music = music_seconds(read_midi_file(path))
        # as long as the music, and the release after it
        assert abs(len(audio) / sr - (music + TAIL_S)) < 0.01
        starts = note_starts(path)
        first, last = int(starts[0] * sr), int(music * sr)
        assert _db(audio[first:last]) > -40  # it sounds, through the whole melody
        assert np.abs(audio).max() <= 1.0
        assert _db(audio[-int(0.1 * sr) :]) < _db(audio[first:last]) - 20  # and dies away after it
        if first > int(0.01 * sr):
            assert np.abs(audio[: first - int(0.002 * sr)]).max() < 1e-3  # silent before the first note
        onsets = energy_onsets(audio, sr)
        recall, precision = matched(onsets, starts, before=0.002, after=0.012)
        assert recall >= 0.9, f"{path.name}: {recall:.0%} of the notes start with an onset within 12 ms"
        assert precision >= 0.9, f"{path.name}: {1 - precision:.0%} of the onsets lie where no note starts"
        assert onset_error(onsets, starts) <= 0.005  # the median note is heard within 5 ms of its time
        # and the check can fail: the same onsets against notes 30 ms later do not match
        assert matched(onsets, starts + 0.030, before=0.002, after=0.012)[0] < 0.3


def test_tempo_velocity_and_program_as_in_the_file(tmp_path):
    """A 90 bpm file with a soft and a loud note on two programs: timing follows the tempo map, the
    loud note is louder, and the program changes the sound."""
    notes = [(60, 0, 2, 40), (60, 8, 10, 120)]  # steps of a sixteenth
    slow = write_midi(tmp_path / "slow.mid", [notes], tempos=((0, 666_667),), programs=[MARIMBA])
    other = write_midi(tmp_path / "other.mid", [notes], tempos=((0, 666_667),), programs=[40])  # violin
    synth = Synth()
    audio = synth.render_midi(read_midi_file(slow))
    synth.close()
    sr = synth.sample_rate
    step = 60 / 90 / 4
    on = energy_onsets(audio, sr)
    assert len(on) == 2 and np.allclose(on, [0.0, 8 * step], atol=0.004)
    soft, loud = (audio[int(t * sr) : int((t + 0.1) * sr)] for t in (0.0, 8 * step))
    assert _db(loud) > _db(soft) + 6
    synth = Synth()
    violin = synth.render_midi(read_midi_file(other))
    synth.close()
    assert len(violin) == len(audio) and not np.allclose(violin, audio, atol=0.01)


def test_generate_writes_audio_beside_each_melody_wav_and_flac(tmp_path):
    out = tmp_path / "gen"
    r = run_cli("generate", "--rules", REPO_RULES, "-n", "2", "--out", str(out), "--program", str(MARIMBA), "--audio")
    assert r.returncode == 0, r.stderr
    for k in range(2):
        mid = out / f"melody-{k:04d}.mid"
        audio, sr = read_audio(out / f"melody-{k:04d}.wav")
        assert abs(len(audio) / sr - (music_seconds(read_midi_file(mid)) + TAIL_S)) < 0.01
        assert _db(audio) > -45
    r = run_cli("render", str(out / "melody-0000.mid"), "--format", "flac", "--out", str(tmp_path / "flac"))
    assert r.returncode == 0, r.stderr
    flac, sr = read_audio(tmp_path / "flac" / "melody-0000.flac")
    wav, _ = read_audio(out / "melody-0000.wav")
    assert flac.shape == wav.shape and np.abs(flac - wav).max() < 2e-4  # lossless, the same 16-bit samples


def test_a_chords_track_sounds_on_its_own_program(tmp_path):
    from melody_lc.melody import Melody
    from melody_lc.melody.melody import CHORD_PROGRAM

    tokens = np.full(256, 128)
    tokens[::16] = 72  # a note a bar
    path = tmp_path / "with_chords.mid"
    Melody(tokens).to_midi_file(path, program=MARIMBA, chords=["C"] * 16 + ["G"] * 16)
    import pretty_midi

    programs = sorted(i.program for i in pretty_midi.PrettyMIDI(str(path)).instruments)
    assert programs == sorted([MARIMBA, CHORD_PROGRAM]) and CHORD_PROGRAM != MARIMBA
    synth = Synth()
    audio = synth.render_midi(read_midi_file(path))
    synth.close()
    assert _db(audio[int(0.2 * 44_100) : int(0.4 * 44_100)]) > -45  # the chord sounds between the melody's notes


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda p: p / "missing.sf2", "no such sound font file"),
        (lambda p: _write(p / "text.sf2", b"not a sound font"), "not a SoundFont"),
        (lambda p: _write(p / "wave.sf2", b"RIFF\x04\x00\x00\x00WAVE"), "not a SoundFont"),
    ],
    ids=["missing", "text", "riff-not-sfbk"],
)
def test_a_missing_or_broken_sound_font_is_one_line_and_exit_2(melody_files, tmp_path, make, expected):
    sf = make(tmp_path)
    out = tmp_path / "out"
    for args in (
        ("render", str(melody_files[0]), "--out", str(out), "--soundfont", str(sf)),
        ("play", str(melody_files[0]), "--soundfont", str(sf)),
    ):
        r = run_cli(*args)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in r.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_a_sound_font_by_name_and_a_broken_midi_file(melody_files, tmp_path):
    from melody_lc.audio.soundfonts import AudioError, default_soundfont, find_soundfont

    assert find_soundfont(None) == default_soundfont() and default_soundfont().is_file()
    assert find_soundfont(str(default_soundfont())) == default_soundfont()
    with pytest.raises(AudioError, match="no such sound font"):
        find_soundfont("NoSuchFont_GM")
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00")
    out = tmp_path / "out"
    r = run_cli("render", str(melody_files[0]), str(bad), "--out", str(out))
    assert r.returncode == 2 and "bad.mid: not a readable MIDI file" in r.stderr and "Traceback" not in r.stderr
    assert "()" not in r.stderr  # the reason is named, also where the MIDI reader gives none
    assert not out.exists() or not any(out.iterdir())  # the good file first is not written either
    silent = write_midi(tmp_path / "silent.mid", [[]])
    r = run_cli("render", str(silent), "--out", str(out))
    assert r.returncode == 2 and "silent.mid: no notes to play" in r.stderr and not out.exists()
    r = run_cli("render", str(melody_files[0]), "--out", str(out / "x.mp3"), "--format", "wav")
    assert r.returncode == 0  # --out is a folder: x.mp3/melody-0.wav


def test_a_bad_sound_font_for_generate_audio_is_said_before_anything_is_written(tmp_path):
    out = tmp_path / "gen"
    r = run_cli("generate", "--rules", REPO_RULES, "-n", "1", "--out", str(out), "--audio", "--soundfont", "nosuch")
    assert r.returncode == 2 and "nosuch: no such sound font" in r.stderr and "wrote" not in r.stdout
    assert not out.exists()
