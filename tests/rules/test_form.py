"""Form, harmony and scopes in the rules language: parsing with located errors, and exact tests on
melodies written by hand (the decode-time constraints are in test_constraints.py)."""

from __future__ import annotations

import numpy as np
import pytest

from melody_lc.melody import Melody
from melody_lc.rules import RulesError, parse_rules
from melody_lc.rules.form import chord_halves


def melody(notes):
    """(pitch, bar 1-16, beat 1-4, beats long) -> tokens (1, 256)."""
    return Melody.from_notes(
        [(p, (b - 1) * 16 + (q - 1) * 4, (b - 1) * 16 + (q - 1 + d) * 4) for p, b, q, d in notes]
    ).tokens[None]


def error(text: str) -> str:
    with pytest.raises(RulesError) as e:
        parse_rules(text, "song.rules")
    return str(e.value)


def test_chords_test_strong_beats_only():
    rules = parse_rules("chords: C | G7")  # two bars, repeated over 16
    on_chord = melody([(60, 1, 1, 1), (62, 1, 2, 1), (67, 1, 3, 1), (71, 2, 1, 1), (65, 2, 3, 2), (60, 3, 1, 1)])
    assert rules.satisfied(on_chord).all()  # D on beat 2 is a passing note; bar 3 is C again
    off_chord = melody([(60, 1, 1, 1), (72, 2, 1, 1), (62, 3, 3, 1)])  # C over G7, D over C
    assert not rules.satisfied(off_chord).any()
    marked = rules.violations(off_chord)[0][0]
    assert sorted(np.flatnonzero(marked)) == [16, 40]
    assert rules.rewards(off_chord)[0, 0] < rules.rewards(on_chord)[0, 0] == 1.0


def test_two_chords_in_a_bar_slash_bass_and_repeat_sign():
    rules = parse_rules("chords: | Dm G | C/Bb | % |")
    halves = chord_halves(rules)
    assert halves[:6] == ["Dm", "G", "C/Bb", "C/Bb", "C/Bb", "C/Bb"] and len(halves) == 32
    assert rules.satisfied(melody([(62, 1, 1, 1), (67, 1, 3, 1), (70, 2, 1, 1), (64, 3, 3, 1)])).all()
    assert not rules.satisfied(melody([(67, 1, 1, 1)])).any()  # G over Dm


def test_chord_errors_are_located_with_a_suggestion():
    assert error("chords: C | Amj7 | F") == (
        "song.rules:1:13: unknown chord quality 'mj7' in 'Amj7' — did you mean 'maj7'? (expected a chord symbol "
        "such as C, Am, G7, Fmaj7, Bdim, Dm7b5, Csus4, C6 or C/E)"
    )
    assert error("chords: C | H7").startswith("song.rules:1:13: expected a chord symbol")
    assert "at most two" in error("chords: C F G | C")
    assert "has no chord" in error("chords: C | | G")
    assert "a melody has 16" in error("chords: " + " | ".join(["C"] * 17))


def test_climax_lies_in_its_bars():
    rules = parse_rules("climax: in bars 9-12")
    assert rules.satisfied(melody([(60, 1, 1, 4), (72, 10, 1, 1), (67, 16, 1, 4)])).all()
    assert not rules.satisfied(melody([(72, 1, 1, 4), (72, 10, 1, 1)])).any()  # as high outside: no climax
    assert not rules.satisfied(melody([(60, 1, 1, 4)])).any()  # nothing in bars 9-12
    assert "song.rules:1:17: bars are numbered 1 to 16" in error("climax: in bars 9-17")
    assert "cannot be scoped" in error("bars 1-8: climax: in bars 2-3")
    assert "anywhere" in error("climax: in bars 1-16")


def test_form_repeats_phrases_and_primes_keep_the_rhythm():
    a = [(60, 1, 1, 2), (64, 2, 1, 1), (67, 3, 3, 1)]
    b = [(72, 9, 1, 4), (71, 10, 2, 1)]

    def at(notes, bar):  # the same notes, moved to start in `bar`
        return [(p, b0 + bar - 1, q, d) for p, b0, q, d in notes]

    aaba = melody(a + at(a, 5) + b + at(a, 13))
    rules = parse_rules("form: A A B A")
    assert rules.satisfied(aaba).all()
    varied = melody(a + [(62, 5, 1, 2), (65, 6, 1, 1), (69, 7, 3, 1)] + b + at(a, 13))
    assert not rules.satisfied(varied).any()
    assert parse_rules("form: A A' B A").satisfied(varied).all()  # the same onsets, other pitches
    assert not parse_rules("form: A A B B").satisfied(aaba).any()
    assert not parse_rules("form: A B A B").satisfied(melody(a + at(a, 5) + at(a, 9) + at(a, 13))).any()  # B = A
    assert parse_rules("form: A B A B A B A B").rules[0].describe().startswith("8 phrases of 2 bars")
    assert "do not divide 16 bars: give 2, 4, 8 or 16 letters" in error("form: A A B")
    assert "song.rules:1:9: expected a phrase letter" in error("form: A 1 B A")


def test_scoped_rules_see_only_their_bars():
    rules = parse_rules("bars 1-8: key: C major\nbars 9-16: key: F# major\nbars 13-16: density: <= 1 notes per bar")
    tune = melody([(60, 1, 1, 1), (64, 8, 1, 1), (66, 9, 1, 1), (61, 13, 1, 2), (70, 16, 1, 1)])
    assert rules.satisfied(tune).tolist() == [[True, True, True]]
    wrong = melody([(66, 1, 1, 1), (60, 9, 1, 1), (61, 13, 1, 1), (66, 13, 3, 1)])
    assert rules.satisfied(wrong).tolist() == [[False, False, False]]
    assert sorted(np.flatnonzero(rules.violations(wrong)[0][0])) == [0, 128, 192, 200]
    assert "line 3: bars 13-16: density: at most 1 notes in every bar\n" in rules.explain() + "\n"
    assert rules.rules[2].describe() == "at most 1 notes in every bar, in bars 13-16"
    assert rules.digest() != parse_rules("key: C major\nkey: F# major\ndensity: <= 1 notes per bar").digest()


def test_scoped_rules_end_on_their_own_tonic():
    rules = parse_rules("bars 1-8: key: D dorian\nbars 1-8: end: on tonic\nkey: ? major")
    cond = rules.fixed_conditions(1, tonic=7)
    assert rules.satisfied(melody([(62, 8, 1, 1), (67, 9, 1, 1)]), cond).all()  # D ends bar 8, G ends the tune


def test_scope_errors_and_contradictions_within_a_scope():
    assert error("bars 0-4: key: C major") == "song.rules:1:6: bars are numbered 1 to 16: '0-4' lies outside"
    assert error("bars 9-4: key: C major").startswith("song.rules:1:6: the span '9-4' is empty")
    assert "contradicts an earlier density rule" in error(
        "bars 1-4: density: >= 6 notes per bar\nbars 1-4: density: <= 2 notes per bar"
    )
    parse_rules("bars 1-4: density: >= 6 notes per bar\nbars 5-8: density: <= 2 notes per bar")  # no contradiction
    # 4 bars need 48 notes, and 50% silence leaves only 32 steps for them
    assert "silence" in error("bars 1-4: density: >= 12 notes per bar\nbars 1-4: rests: >= 50%")
    assert "repeated note for note" in error("form: A B A B\nclimax: in bars 5-8")


def test_a_chords_rule_writes_a_chord_track_and_the_roll_shows_its_symbols(tmp_path):
    import pretty_midi

    from melody_lc.tui.pianoroll import chord_line

    rules = parse_rules("chords: C | Am | Dm G7 | C/E")
    tune = Melody(melody([(72, 1, 1, 4), (76, 3, 3, 2)])[0])
    tune.to_midi_file(tmp_path / "t.mid", qpm=120, chords=chord_halves(rules))
    pm = pretty_midi.PrettyMIDI(str(tmp_path / "t.mid"))
    assert [i.name for i in pm.instruments] == ["melody-lc", "chords"]
    chords = pm.instruments[1].notes
    at_bar_3 = sorted(n.pitch for n in chords if abs(n.start - 4.0) < 1e-6)  # bar 3 starts at 4 s
    assert at_bar_3 == [50, 53, 57] and all(n.end - n.start == pytest.approx(1.0) for n in chords if n.pitch == 50)
    assert sorted(n.pitch for n in chords if abs(n.start - 6.0) < 1e-6) == [40, 48, 55]  # C/E: E in the bass
    assert Melody.from_midi_file(tmp_path / "t.mid").tokens.tolist() == tune.tokens.tolist()  # the melody on top
    assert chord_line(chord_halves(rules), 64).startswith("C   Am  D G C/E C")  # Dm cut short before G7


def test_rules_check_explains_the_new_kinds_and_rejects_bad_ones(tmp_path):
    import subprocess
    import sys

    from melody_lc.paths import shipped_dir

    good = subprocess.run(
        [sys.executable, "-m", "melody_lc", "rules", "check", str(shipped_dir("rules") / "aaba_song.rules")],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0 and "4 phrases of 4 bars: A A B A" in good.stdout and "C | Am | Dm G7" in good.stdout
    bad = tmp_path / "bad.rules"
    bad.write_text("key: C major\nbars 3-20: density: >= 2 notes per bar\n")
    res = subprocess.run(
        [sys.executable, "-m", "melody_lc", "rules", "check", str(bad)], capture_output=True, text=True
    )
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        f"melody-lc: error: {bad}:2:6: bars are numbered 1 to 16: '3-20' lies outside"
    ]
