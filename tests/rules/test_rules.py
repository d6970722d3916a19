"""The rules language: parsing, errors with positions, rewards and exact tests, plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from melody_lc.melody import Melody
from melody_lc.paths import shipped_dir
from melody_lc.rules import RulesError, load_rules, parse_rules
from melody_lc.rules.plan import load_plan

C_SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


def scale_melody(notes_per_bar=4, pitches=C_SCALE, length=None):
    step = 16 // notes_per_bar
    dur = length or step
    return Melody.from_notes([(pitches[k % len(pitches)], k * step, k * step + dur) for k in range(16 * notes_per_bar)])


def test_every_shipped_example_parses_and_explains():
    files = sorted(shipped_dir("rules").glob("*.rules"))
    assert len(files) >= 6
    for f in files:  # a file of phrase sections explains each section
        plan = load_plan(f)
        assert all(len(rs) >= 1 for rs in plan.rulesets()) and f.name in plan.explain()


def test_rewards_and_exact_tests_by_hand():
    rs = parse_rules(
        textwrap.dedent("""\
        key: C major
        density: >= 3 notes per bar
        range: C4 .. C6
        leap: <= 7 semitones
        rests: <= 25%
        distinct: >= 5 pitches
        start: on tonic
        end: on G
    """)
    )
    good = scale_melody(4).tokens  # quarter notes up and down C major, from C4
    r, ok = rs.rewards(good[None]), rs.satisfied(good[None])
    assert ok.tolist() == [[True, True, True, False, True, True, True, False]]  # B4->C4 leaps 11; ends on C5
    assert (r[ok] == 1).all() and (r[~ok] < 1).all() and (r > 0).all()
    # one F#: 1 of 64 notes outside C major
    notes = scale_melody(4).notes()
    notes[10] = (66, notes[10][1], notes[10][2])
    bad = Melody.from_notes(notes).tokens
    assert not rs.satisfied(bad[None])[0, 0]
    assert rs.rewards(bad[None])[0, 0] == pytest.approx(np.exp(-(1 / 64) / 0.05))
    sparse = scale_melody(2).tokens  # 2 notes per bar: density violated by 1 note in each bar
    assert rs.rewards(sparse[None])[0, 1] == pytest.approx(np.exp(-1 / 0.5))


def test_batches_equal_one_by_one_and_reward_is_bounded():
    rs = load_rules(shipped_dir("rules") / "harmonic_minor_dance.rules")
    rng = np.random.default_rng(0)
    tokens = np.where(rng.random((50, 256)) < 0.3, rng.integers(40, 90, (50, 256)), 128)
    tokens = np.stack([Melody(t).tokens for t in tokens])
    together = rs.rewards(tokens)
    assert together.shape == (50, 5) and (together >= 0).all() and (together <= 1).all()
    np.testing.assert_array_equal(together, np.concatenate([rs.rewards(t[None]) for t in tokens]))
    np.testing.assert_array_equal(rs.satisfied(tokens), rs.rewards(tokens) == 1.0)


def test_open_parameters_make_a_condition():
    rs = parse_rules("key: ? major\ndensity: >= ? notes per bar\nend: on tonic")
    assert set(rs.open) == {"tonic", "density"} and rs.condition_size == 13
    g_major = scale_melody(4, pitches=[67, 69, 71, 72, 74, 76, 78, 79]).tokens[None]
    assert rs.satisfied(g_major, rs.fixed_conditions(1, tonic=7, density=4))[0, 0]
    assert not rs.satisfied(g_major, rs.fixed_conditions(1, tonic=0, density=4))[0, 0]
    assert not rs.satisfied(g_major, rs.fixed_conditions(1, tonic=7, density=5))[0, 1]
    cond = rs.sample_conditions(100, np.random.default_rng(0))
    vec = rs.condition_vector(cond)
    assert vec.shape == (100, 13) and (vec[:, :12].sum(1) == 1).all() and np.abs(vec[:, 12]).max() <= 1
    with pytest.raises(KeyError):
        rs.rewards(g_major)


@pytest.mark.parametrize(
    "text,where,message",
    [
        ("key: C dorain", "1:8", "did you mean 'dorian'"),
        ("kee: C major", "1:1", "did you mean 'key'"),
        ("\n\nrange: C6 .. C4", "3:8", "range is empty"),
        ("density: >= 3 notes per bra", "1:25", "expected 'bar'"),
        ("rests: <= 25", "1:13", "expected '%'"),
        ("leap <= 7 semitones", "1:1", "expected 'kind: ...'"),
        ("density: >= 20 notes per bar", "1:13", "impossible"),
        ("key: H major", "1:6", "pitch class"),
        ("range: C4 .. Q9", "1:14", "a note such as C4"),
        ("leap: <= 7 semitones extra", "1:22", "unexpected 'extra'"),
        ("key: C major weight -1", "1:21", "weight must be positive"),
        ("# only a comment", "1:1", "no rules"),
    ],
)
def test_errors_say_where_and_what(text, where, message):
    with pytest.raises(RulesError) as e:
        parse_rules(text, "my.rules")
    assert str(e.value).startswith(f"my.rules:{where}: ") and message in str(e.value)


@pytest.mark.parametrize(
    "text,line",
    [
        ("density: >= 3 notes per bar\ndensity: <= 2 notes per bar", 2),
        ("key: C major\nkey: F# major pentatonic", 2),
        ("range: C4 .. E4\nrange: G4 .. C5", 2),
        ("key: C major\nrange: C4 .. D4\ndistinct: >= 4 pitches", 3),
        ("key: pitch classes C F#\nleap: <= 2 semitones\ndistinct: >= 2 pitches", 3),  # no second pitch reachable
        ("leap: <= 0 semitones\ndistinct: >= 2 pitches", 2),
        ("start: on tonic", 1),
    ],
)
def test_contradictions_are_reported(text, line):
    with pytest.raises(RulesError) as e:
        parse_rules(text, "c.rules")
    assert e.value.line == line


def test_sharps_are_not_comments():
    rs = parse_rules("key: F# minor   # home key\nrange: F#3 .. F#5")
    assert rs.rules[0].params["tonic"] == 6 and rs.rules[1].params == {"low": 54, "high": 78}


def test_rules_check_cli(tmp_path):
    good = shipped_dir("rules") / "c_major_busy.rules"
    res = subprocess.run(
        [sys.executable, "-m", "melody_lc", "rules", "check", str(good)], capture_output=True, text=True
    )
    assert res.returncode == 0 and "every note is in C major" in res.stdout
    # decoded under the constraints by the shipped model: c_major_busy's masks leave every draw a way
    assert "256 of 256 prior melodies decoded under the rules' constraints" in res.stdout
    bad = tmp_path / "bad.rules"
    bad.write_text("key: C major\nkey: G dorain\n")
    res = subprocess.run(
        [sys.executable, "-m", "melody_lc", "rules", "check", str(bad)], capture_output=True, text=True
    )
    assert res.returncode == 2 and res.stderr.strip() == (
        f"melody-lc: error: {bad}:2:8: unknown mode 'dorain' — did you mean 'dorian'? (modes: aeolian, blues, dorian, "
        "harmonic minor, ionian, locrian, lydian, major, major pentatonic, melodic minor, minor, minor pentatonic, "
        "mixolydian, natural minor, pentatonic, phrygian)"
    )
    res = subprocess.run(
        [sys.executable, "-m", "melody_lc", "rules", "check", str(tmp_path / "none.rules")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "no such rules file" in res.stderr


def test_rules_check_finds_what_only_the_constraints_find(tmp_path):
    """The file alone shows no contradiction; decoding under the masks does (every note must
    repeat the first, a G, and the last must be a C), as generate would before fitting."""
    impossible = tmp_path / "impossible.rules"
    impossible.write_text("start: on G\nleap: <= 0 semitones\nend: on C\n")
    check = [sys.executable, "-m", "melody_lc", "rules", "check"]
    res = subprocess.run([*check, str(impossible)], capture_output=True, text=True)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "the rules allow no melody" in res.stderr and "end:3" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([*check, "--static", str(impossible)], capture_output=True, text=True)
    assert res.returncode == 0 and "prior melodies" not in res.stdout  # the file alone: no model, no decoding
    res = subprocess.run(
        [*check, "--model", str(tmp_path / "nowhere"), str(impossible)], capture_output=True, text=True
    )
    assert res.returncode == 2 and "nowhere" in res.stderr and len(res.stderr.strip().splitlines()) == 1


PLUGIN = '''
import numpy as np
from melody_lc.rules import RuleKind


class Lowest(RuleKind):
    """The lowest note falls in a given bar (a reward that is not differentiable in any sense)."""
    name = "lowest"
    summary = "the lowest note lies in bar N: 'in bar 12'"

    def parse(self, cur):
        cur.expect("in")
        cur.expect("bar")
        bar, tok = cur.number("a bar number 1-16", integer=True)
        if not 1 <= bar <= 16:
            cur.fail("bars are numbered 1 to 16", tok.column)
        return {"bar": bar}

    def describe(self, params):
        return f"the lowest note is in bar {params['bar']}"

    def satisfied(self, tokens, params, cond):
        pitch = np.where(tokens < 128, tokens, 999)
        return pitch.argmin(1) // 16 == params["bar"] - 1

    def reward(self, tokens, params, cond):
        return self.satisfied(tokens, params, cond).astype(float)
'''


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    (tmp_path / "lowest_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "lowest_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lowest-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[melody_lc.rules]\nlowest = lowest_plugin:Lowest\nbroken = lowest_plugin_missing:Nothing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plugin_kind_is_discovered_and_scores(plugin_path):
    rs = parse_rules("key: C major\nlowest: in bar 3")
    rising = scale_melody(4).notes()
    tokens = Melody.from_notes(rising).tokens[None]  # C4..C5: the C4 is in bar 1
    assert rs.satisfied(tokens).tolist() == [[True, False]] and rs.rewards(tokens)[0, 1] == 0.0
    assert parse_rules("lowest: in bar 1").satisfied(tokens)[0, 0]
    with pytest.raises(RulesError, match="numbered 1 to 16"):
        parse_rules("lowest: in bar 40")
    env = {"PYTHONPATH": str(plugin_path)}
    import os

    res = subprocess.run(
        [sys.executable, "-m", "melody_lc", "rules", "kinds"], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert "lowest [plugin lowest_plugin]" in res.stdout
    assert "plugin failed to load: broken = lowest_plugin_missing:Nothing: ModuleNotFoundError" in res.stdout


def test_condition_vector_round_trips():
    rs = parse_rules("key: ? dorian\ndensity: <= ? notes per bar")
    cond = rs.sample_conditions(20, np.random.default_rng(1))
    back = rs.conditions_from_vector(rs.condition_vector(cond))
    np.testing.assert_array_equal(back["tonic"], cond["tonic"])
    np.testing.assert_allclose(back["density"], cond["density"], rtol=1e-5)


def test_violations_mark_the_notes_that_break_each_rule(tmp_path):
    from PIL import Image

    from melody_lc.melody import Melody
    from melody_lc.melody.render import pianoroll_sheet

    # C D E F# | G ... a leap of 12 up to G5 at step 16; ends on B
    notes = [(60, 0, 4), (62, 4, 8), (64, 8, 12), (66, 12, 16), (79, 16, 20), (71, 20, 24)]
    tokens = Melody.from_notes(notes).tokens.astype(np.int64)[None]
    onset = {s: p for p, s, _ in notes}
    for text, marked in (
        ("key: C major", {12}),
        ("range: C4 .. C5", {16}),
        ("leap: <= 7 semitones", {16, 20}),
        ("start: on D", {0}),
        ("end: on C", {20}),
        ("density: <= 3 notes per bar", {0, 4, 8, 12}),
        ("rests: <= 10%", set()),
    ):
        rules = parse_rules(text)
        bad, melodies = rules.violations(tokens)
        assert set(np.flatnonzero(bad[0])) == marked, text
        assert melodies[0] == (not rules.satisfied(tokens).all()), text
        assert all(tokens[0, s] == onset[s] for s in marked)
    rules = parse_rules("key: C major\nrests: <= 10%")
    pianoroll_sheet(tokens, tmp_path / "plain.png")
    pianoroll_sheet(tokens, tmp_path / "marked.png", marks=rules.violations(tokens))
    plain, marked = (np.asarray(Image.open(tmp_path / f)) for f in ("plain.png", "marked.png"))
    red = (marked[..., 0] > 180) & (marked[..., 1] < 60) & (marked[..., 2] < 60)
    assert red.sum() > 0 and not ((plain[..., 0] > 180) & (plain[..., 1] < 60) & (plain[..., 2] < 60)).any()
    # the F# (4 steps) is red; the frame (the melody breaks the rest share) is red around the tile
    assert red[0:2].any() and red[:, 0:2].any()
