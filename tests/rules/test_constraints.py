"""Decode-time constraints agree with the exact tests: a property test over random rules and logits.

Random logits stand in for the decoder (biased per row toward notes, holds or rests, so that both
busy and sparse lines come up); every row that the steer did not mark as a dead end must pass every
rule's exact test, for hundreds of random parameter values, each kind alone and in combination.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from melody_lc.melody.encoding import BAR_STEPS, HOLD, NUM_CLASSES, REST, STEPS
from melody_lc.melody.metrics import sounding_pitch
from melody_lc.melody.pitches import NAMES
from melody_lc.melody.steer import BARS
from melody_lc.rules import RulesError, parse_rules

MODES = ["major", "minor", "dorian", "harmonic minor", "major pentatonic", "blues", "locrian"]


def random_rule(kind: str, rng: np.random.Generator) -> str:
    def bounds(lo, hi, unit="", pct=False):
        a, b = sorted(rng.integers(lo, hi + 1, 2))
        fmt = (lambda v: f"{v}%") if pct else (lambda v: f"{v}")
        return [f">= {fmt(a)}", f"<= {fmt(b)}", f"{fmt(a)} .. {fmt(b)}", f"at least {fmt(a)}"][rng.integers(4)] + unit

    if kind == "key":
        if rng.random() < 0.2:
            return "key: pitch classes " + " ".join(NAMES[p] for p in rng.choice(12, rng.integers(1, 6), replace=False))
        return f"key: {NAMES[rng.integers(12)] if rng.random() < 0.8 else '?'} {MODES[rng.integers(len(MODES))]}"
    if kind == "range":
        low = int(rng.integers(40, 80))
        return f"range: {low} .. {low + int(rng.integers(0, 30))}"
    if kind == "density":
        if rng.random() < 0.15:
            return f"density: {['>=', '<='][rng.integers(2)]} ? notes per bar"
        return f"density: {bounds(0, 8)} notes per bar" + (" on average" if rng.random() < 0.3 else "")
    if kind == "leap":
        return f"leap: {bounds(0, 12)} semitones"
    if kind == "rests":
        return f"rests: {bounds(0, 90, pct=True)}"
    if kind == "distinct":
        return f"distinct: {bounds(1, 12)} pitches"
    if kind == "chords":
        symbols = ["C", "Am", "F", "G7", "Dm7", "Em", "Bdim", "Fmaj7", "Esus4", "C/E", "Bb", "A7", "Dm7b5", "Eb+"]
        bars = [" ".join(rng.choice(symbols, rng.integers(1, 3))) for _ in range(rng.choice([1, 2, 4, 8, 12, 16]))]
        return "chords: " + " | ".join(bars)
    if kind == "climax":
        first = int(rng.integers(1, 16))
        return f"climax: in bars {first}-{int(rng.integers(first, 16))}"
    if kind == "form":
        labels = ["A", "A", "B", "A'", "C", "B'"]
        return "form: " + " ".join(rng.choice(labels, rng.choice([2, 4, 8])))
    if kind.startswith("bars "):  # a kind of the whole melody, scoped to a random span
        first = int(rng.integers(1, 17))
        last = int(rng.integers(first, 17))
        return f"bars {first}-{last}: " + random_rule(kind.split()[1], rng)
    return f"{kind}: on {'tonic' if rng.random() < 0.5 else NAMES[rng.integers(12)]}"


@pytest.fixture(autouse=True)
def one_thread():
    """Masks over a few dozen rows are tiny ops: a second thread only adds wake-up latency."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


KINDS = ["key", "range", "density", "leap", "rests", "distinct", "start", "end", "chords", "climax", "form"]
SCOPED = [f"bars {k}" for k in ("key", "range", "density", "leap", "rests", "distinct", "start", "end", "chords")]


def _random_setup(rules, n: int, seed: int):
    """The condition, steer, generator and per-row logit bias of a random decode of n rows."""
    rng = np.random.default_rng(seed)
    cond = rules.sample_conditions(n, rng) if rules.open else None
    steer = rules.steer(cond, n)
    g = torch.Generator().manual_seed(seed)
    bias = torch.zeros(n, NUM_CLASSES)
    bias[:, HOLD] = torch.from_numpy(rng.uniform(-2, 7, n)).float()  # from busy to long notes
    bias[:, REST] = torch.from_numpy(rng.uniform(-2, 5, n)).float()
    centre = torch.from_numpy(rng.integers(40, 90, n))
    bias[:, :128] = -((torch.arange(128)[None] - centre[:, None]).abs().float() / 6)  # a register per row
    return cond, steer, g, bias


def _replay(tokens: np.ndarray) -> torch.Tensor:
    """Logits that put the given tokens (rows,) far ahead: at temperature 0, a replay of them."""
    return torch.nn.functional.one_hot(torch.from_numpy(tokens), NUM_CLASSES).float() * 50


def steered_random_decode(rules, n: int, seed: int, temperature: float = 1.0, replay: np.ndarray | None = None):
    """Decode n rows of random logits under the rules' constraints, the bars in sequence: (tokens,
    cond, stats). With ``replay`` (n, 256): those melodies replayed at temperature 0 (the stats say
    where the constraints forbade them)."""
    cond, steer, g, bias = _random_setup(rules, n, seed)
    state = steer.start(n)
    out = torch.empty(n, STEPS, dtype=torch.long)
    for t in range(STEPS):
        if replay is None:
            logits = torch.randn(n, NUM_CLASSES, generator=g) * 2 + bias
        else:
            logits, temperature = _replay(replay[:, t]), 0.0
        out[:, t] = steer.choose(logits, state, temperature, g)
    return out.numpy(), cond, steer.stats


def by_bar_random_decode(rules, n: int, seed: int, temperature: float = 1.0, replay: np.ndarray | None = None):
    """The same with the bars of each melody at once (Steer.start_bars), the rows split in two
    blocks of whole melodies as the model splits a large batch; None where a rule needs its bars in
    sequence."""
    cond, steer, g, bias = _random_setup(rules, n, seed)
    if not steer.start_bars(n):
        return None
    rows, half = n * BARS, n // 2 * BARS
    bias = bias.repeat_interleave(BARS, 0)
    out = torch.empty(rows, BAR_STEPS, dtype=torch.long)
    for t in range(BAR_STEPS):
        if replay is None:
            logits = torch.randn(rows, NUM_CLASSES, generator=g) * 2 + bias
        else:
            logits, temperature = _replay(replay.reshape(rows, BAR_STEPS)[:, t]), 0.0
        for block in (slice(0, half), slice(half, rows)):
            out[block, t] = steer.choose_bars(logits[block], t, block, temperature, g)
    steer.finish_bars()
    return out.view(n, STEPS).numpy(), cond, steer.stats


def check(text: str, seed: int, n: int = 48, temperature: float = 1.0):
    try:
        rules = parse_rules(text)
    except RulesError:
        return None  # statically contradictory: rejected before any decoding
    tokens, cond, stats = steered_random_decode(rules, n, seed, temperature)
    ok = rules.satisfied(tokens, cond)
    live = ~stats.dead_end.numpy()
    bad = ~ok[live].all(1)
    assert not bad.any(), f"{text!r} (seed {seed}): a row without a dead end breaks " + ", ".join(
        np.array(rules.names)[~ok[live][bad][0]]
    )
    return stats


@pytest.mark.parametrize("kind", KINDS + SCOPED)
def test_each_kind_alone_always_holds(kind):
    rng = np.random.default_rng((KINDS + SCOPED).index(kind))
    for i in range(25):
        text = random_rule(kind, rng)
        if kind.endswith(("start", "end")) and "tonic" in text:
            text = random_rule("key", rng) + "\n" + text
        stats = check(text, seed=i, temperature=[1.0, 0.5, 0.0][i % 3])
        if stats is not None and not kind.endswith(("start", "end")):
            assert not stats.dead_end.any(), f"{text!r} alone reached a dead end"


def test_combinations_hold_where_no_dead_end():
    rng = np.random.default_rng(1234)
    checked = dead = 0
    for i in range(200):
        kinds = rng.choice(KINDS + SCOPED, rng.integers(2, 5), replace=False)
        text = "\n".join(random_rule(k, rng) for k in kinds)
        if any(k.endswith(("start", "end")) for k in kinds) and "key" not in kinds:
            text = "key: C major\n" + text
        stats = check(text, seed=i, n=32)
        if stats is not None:
            checked += 1
            dead += int(stats.dead_end.sum())
    assert checked > 120  # most random combinations are satisfiable
    print(f"dead ends: {dead} of {checked * 32} rows")
    assert dead < 0.2 * checked * 32  # random logits are harsher than a trained decoder


BY_BAR = ["key", "range", "density", "chords", "bars key", "bars range", "bars density", "bars chords"]


@pytest.mark.parametrize("kind", BY_BAR)
def test_bars_at_once_keep_the_rules_and_allow_what_bars_in_sequence_allow(kind):
    """Rules that need nothing but the step and its bar's own notes decode with the bars at once;
    those melodies pass the exact tests, and the masks of both ways agree: each replays the
    other's melodies without overruling a step (but for one, named below)."""
    rng = np.random.default_rng(100 + BY_BAR.index(kind))
    at_once = 0
    for i in range(16):
        text = random_rule(kind, rng)
        if kind == "density" and i % 4 == 0:  # with a key: the kinds combined
            text = random_rule("key", rng) + "\n" + text
        try:
            rules = parse_rules(text)
        except RulesError:
            continue
        n = 24
        decoded = by_bar_random_decode(rules, n, seed=i, temperature=[1.0, 0.5, 0.0][i % 3])
        if decoded is None:
            assert "on average" in text  # a count over the whole melody: the bars run in sequence
            continue
        at_once += 1
        tokens, cond, stats = decoded
        live = ~stats.dead_end.numpy()
        assert stats.interventions.shape == (n,) and rules.satisfied(tokens, cond)[live].all(), text
        _, _, seq = steered_random_decode(rules, n, seed=i, replay=tokens)
        assert (seq.interventions.numpy()[live] == 0).all(), text
        seq_tokens, _, seq_stats = steered_random_decode(rules, n, seed=i, temperature=[1.0, 0.5, 0.0][i % 3])
        _, _, bars = by_bar_random_decode(rules, n, seed=i, replay=seq_tokens)
        # The one difference: by bars, "at least one note" starts it at the last bar's last step
        # when no bar has one before its own last step (the others' last steps are drawn with it).
        early = (seq_tokens.reshape(n, BARS, BAR_STEPS)[:, :, :-1] >= 128).all((1, 2))
        agree = ~seq_stats.dead_end.numpy() & ~early
        assert (bars.interventions.numpy()[agree] == 0).all(), text
    assert at_once >= 10


def test_a_rule_across_bar_lines_keeps_the_bars_in_sequence():
    for text in ("leap: <= 5 semitones", "rests: >= 20%", "end: on C", "density: >= 2 notes per bar on average"):
        assert not parse_rules(text).steer(None, 4).start_bars(4), text
    for text in ("key: C major\ndensity: >= 3 notes per bar\nrange: C4 .. C6", "bars 9-16: key: D dorian"):
        assert parse_rules(text).steer(None, 4).start_bars(4), text


@pytest.mark.parametrize("text", ["rests: >= 25%", "rests: 25% .. 40%\ndensity: 2 .. 5 notes per bar"])
def test_a_rests_rule_paces_its_silence_by_phrase(text):
    """A decoder that all but never rests and holds its notes long, under a rule that needs a
    quarter of the steps silent: by each four-bar phrase's end the silence has kept up with the
    phrase's share (the notes that another rule needs may still start, so with one the share may
    fall a note or so short), the last phrase gets no more than its own share, not the whole of
    it, and a breath does not run on into the next phrase by the HOLD with which the decoder,
    blind to the bar before, ties a note over the bar line."""
    rules = parse_rules(text)
    n = 32
    steer, g = rules.steer(None, n), torch.Generator().manual_seed(0)
    state = steer.start(n)
    bias = torch.zeros(NUM_CLASSES)
    bias[REST], bias[HOLD] = -6.0, 6.0  # long notes, hardly a rest
    tokens = np.stack(
        [steer.choose(torch.randn(n, NUM_CLASSES, generator=g) + bias, state, 1.0, g).numpy() for _ in range(STEPS)], 1
    )
    assert rules.satisfied(tokens).all() and not steer.stats.dead_end.any()
    silent = sounding_pitch(tokens) < 0  # (N, 256): no note sounds, as the exact test counts
    short = 0 if "density" not in text else 5  # notes per bar: up to a bar's needed notes
    for phrase in range(1, 4):
        assert (silent[:, : phrase * 64].sum(1) >= 16 * phrase - short).all(), phrase
    assert (silent[:, 192:].sum(1) <= 16 + short + 8).all()  # unpaced, all 64 steps would come here
    assert (silent[:, 192:].sum(1) < silent[:, :192].sum(1)).all()
    assert not silent[:, [64, 128, 192]].any()  # each phrase after a breath starts with a note


def test_dead_end_names_the_rules_that_block():
    # The first note is a G and no leap leaves it, so the last note cannot be the C that 'end' asks
    # for (not seen statically); a melody's only note is both the first and the last.
    rules = parse_rules("start: on G\nleap: <= 0 semitones\nend: on C\nrange: C4 .. C6")
    _, _, stats = steered_random_decode(rules, 16, seed=0)
    assert stats.dead_end.all()
    assert ("leap:2", "end:3") in stats.blocked_by
    assert set(stats.blocked_by) <= {("leap:2", "end:3"), ("start:1", "end:3")}


def test_interventions_counted_against_the_decoders_own_draw():
    rules = parse_rules("range: C4 .. C5")
    tokens, _, stats = steered_random_decode(rules, 16, seed=3, temperature=0.0)
    assert rules.satisfied(tokens).all()
    assert (stats.interventions > 0).all() and torch.equal(stats.interventions, stats.by_rule["range:1"])
    assert (stats.mass_removed > 0).all()


def test_unconstrained_rows_are_left_alone():
    rules = parse_rules("range: 0 .. 127")
    _, _, stats = steered_random_decode(rules, 8, seed=1)
    assert (stats.interventions == 0).all() and float(stats.mass_removed.max()) < 1e-6


def test_the_readme_plugin_constraint_keeps_its_rule(tmp_path, monkeypatch):
    """The rules plugin of docs/rules.md, with its decode-time constraint, through its entry point."""
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "docs" / "rules.md").read_text()
    code = readme[readme.index("# lowest_plugin.py") :]
    (tmp_path / "readme_lowest.py").write_text(code[: code.index("```")])
    dist = tmp_path / "readme_lowest-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: readme-lowest\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[melody_lc.rules]\nlowest = readme_lowest:Lowest\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for bar in (1, 7, 16):
        rules = parse_rules(f"key: C major\nlowest: in bar {bar}")
        assert rules.verified_only == []
        tokens, cond, stats = steered_random_decode(rules, 24, seed=bar)
        assert not stats.dead_end.any() and rules.satisfied(tokens).all()
        assert stats.by_rule["lowest:2"].sum() > 0  # random logits put the lowest note anywhere: the mask acts
        # With a floor, a low note before bar N leaves the lowest no room: a dead end, named, and redrawn.
        check(f"lowest: in bar {bar}\nrange: C3 .. C6", seed=bar)


@pytest.mark.parametrize(
    "text",
    [
        "form: A A B B C C D D\nbars 15-16: density: <= 2 notes per bar",  # bars 13-14 are copied there
        "form: A A B B C C D D\nclimax: in bars 9-12",  # bars 11-12 copy 9-10: the climax comes by bar 10
        "form: A A B A\nbars 13-16: rests: >= 50%\nclimax: in bars 9-12\nkey: C major",
    ],
)
def test_a_form_copy_keeps_the_rules_of_the_bars_it_copies_into(text):
    """A copied phrase has no choice left: the rules on the copy hold on its first statement, and
    the climax is forced in a bar that is not copied, so none of these reach a dead end."""
    stats = check(text, seed=5)
    assert not stats.dead_end.any(), set(stats.blocked_by)


def test_the_decode_state_is_what_the_tokens_say():
    """Each field the steer keeps step by step (several incrementally) equals its value recomputed
    from the tokens written so far, at every step, on random lines both busy and sparse."""
    from melody_lc.melody.steer import DecodeState

    rng = np.random.default_rng(5)
    n = 64
    kinds = rng.choice(3, (n, STEPS), p=[0.35, 0.35, 0.3])  # note-on, HOLD, REST
    tokens = np.where(kinds == 0, rng.integers(50, 75, (n, STEPS)), np.where(kinds == 1, HOLD, REST))
    tokens[:8, :20] = HOLD  # holds before any note: silence
    state = DecodeState(n)
    for t in range(STEPS):
        state.update(torch.from_numpy(tokens[:, t]))
        seen = tokens[:, : t + 1]
        for row in range(0, n, 7):
            notes = seen[row][seen[row] < 128]
            sounding, silent = False, 0
            for tok in seen[row]:
                sounding = tok < 128 or (tok == HOLD and sounding)
                silent += not sounding
            assert state.sounding[row] == sounding and state.silent_steps[row] == silent
            assert state.onsets[row] == len(notes) and state.distinct[row] == len(set(notes.tolist()))
            assert state.used[row].nonzero().squeeze(1).tolist() == sorted(set(notes.tolist()))
            assert state.last_pitch[row] == (notes[-1] if len(notes) else -1)
            assert state.highest[row] == (notes.max() if len(notes) else -1)
            assert state.lowest[row] == (notes.min() if len(notes) else 128)
            assert state.max_leap[row] == (np.abs(np.diff(notes)).max() if len(notes) > 1 else 0)
            in_bar = seen[row][(t + 1) // 16 * 16 :]
            assert state.bar_onsets[row] == (in_bar < 128).sum()
