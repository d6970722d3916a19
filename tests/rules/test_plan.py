"""Rules that change from phrase to phrase: sections and morphs, parsed, explained and played."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from melody_lc.rules import RulesError, parse_rules
from melody_lc.rules.plan import parse_plan
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
SPARSE_TO_BUSY = """# sparse, then busier over two phrases, then busy
key: C major
phrase 1:
density: <= 2 notes per bar
phrases 2-3: morph
phrase 4:
density: >= 4 notes per bar
"""


def error(text: str) -> str:
    with pytest.raises(RulesError) as e:
        parse_plan(text, "p.rules")
    return str(e.value)


def test_sections_play_in_turn_and_the_plan_starts_again():
    plan = parse_plan(SPARSE_TO_BUSY, "p.rules")
    assert (
        plan.sectioned
        and plan.length == 4
        and [s.words for s in plan.sections]
        == [
            "phrase 1",
            "phrases 2-3",
            "phrase 4",
        ]
    )
    steps = [plan.at(k) for k in range(9)]
    assert [s.section.words for s in steps] == ["phrase 1", "phrases 2-3", "phrases 2-3", "phrase 4"] * 2 + ["phrase 1"]
    assert [round(s.t, 3) for s in steps[:4]] == [0.0, 0.333, 0.667, 0.0]
    assert steps[1].source is plan.sections[0] and steps[1].target is plan.sections[2]
    assert steps[1].words(4, 5) == "phrase 2 of 4: morph 1/2 from phrase 1 to phrase 4"
    # a section's rules are the shared ones and its own; a morph is held to the shared ones
    assert [r.kind.name for r in steps[0].rules.rules] == ["key", "density"]
    assert [r.kind.name for r in steps[1].rules.rules] == ["key"]
    assert steps[0].rules.digest() == parse_rules("key: C major\ndensity: <= 2 notes per bar").digest()


def test_a_morph_at_the_end_moves_back_to_phrase_1():
    plan = parse_plan("phrase 1:\nkey: C major\nphrase 2:\nkey: G major\nphrases 3-4: morph\n", "p.rules")
    step = plan.at(3)
    assert step.source.words == "phrase 2" and step.target.words == "phrase 1" and step.rules is None


def test_one_phrase_of_a_plan_for_the_commands_that_make_one_melody():
    assert [r.kind.name for r in parse_rules(SPARSE_TO_BUSY, "p.rules", phrase=4).rules] == ["key", "density"]
    for phrase, says in [
        (None, "p.rules:3:1: the rules change from phrase to phrase here (phrases 1-4)"),
        (2, "phrase 2 is a morph between phrase 1 and phrase 4"),
        (5, "--phrase 5: this file has phrases 1-4"),
    ]:
        with pytest.raises(RulesError) as e:
            parse_rules(SPARSE_TO_BUSY, "p.rules", phrase=phrase)
        assert says in str(e.value)
    assert parse_rules("key: C major", phrase=3).rules[0].kind.name == "key"  # no sections: the rules of every phrase


@pytest.mark.parametrize(
    "text, says",
    [
        ("phrase 1:\nkey: C major\nphrase 3:\nkey: D major", "p.rules:3:1: expected phrase 2 here after phrase 1"),
        ("phrases 1-2:\nkey: C major\nphrase 2:\nkey: D major", "expected phrase 3 here after phrases 1-2"),
        ("phrase 2:\nkey: C major", "expected phrase 1 here"),
        ("phrase 0:\nkey: C major", "p.rules:1:8: phrases are numbered from 1"),
        ("phrases 3-1:\nkey: C major", "the span '3-1' is empty"),
        ("phrase 1: morph\nphrase 2:\nkey: C major", "a morph cannot come first"),
        ("phrase 1:\nkey: C major\nphrase 2: morph\nkey: D major\nphrase 3:\nkey: E major", "p.rules:4:1: a morph"),
        ("phrase 1:\nkey: C major\nphrase 2: morf\nphrase 3:\nkey: D major", "did you mean 'morph'"),
        ("phrase 1:\nkey: C major\nphrase 2: morph\nphrase 3: morph\nphrase 4:\nkey: D", "two morphs in a row"),
        ("key: C major\nmorph: 4 phrases", "write 'phrases 2-4: morph' on a line of its own"),
        ("phrase 1:\nphrase 2:\nkey: C major", "p.rules:1:1: no rules for this section"),
        ("density: >= 4 notes per bar\nphrase 1:\ndensity: <= 2 notes per bar", "p.rules:3:1: contradicts"),
    ],
)
def test_a_plan_that_cannot_play_says_where_and_why(text, says):
    assert says in error(text)


def test_rules_check_explains_a_plan_in_words(tmp_path):
    f = tmp_path / "song.rules"
    f.write_text(SPARSE_TO_BUSY)
    res = run_cli("rules", "check", str(f))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"{f}: 4 phrases in 3 sections, played in turn and then again from phrase 1",
        "  every phrase:",
        "    line 2: key: every note is in C major",
        "  line 3: phrase 1:",
        "    line 4: density: at most 2 notes in every bar",
        "  line 5: phrases 2-3: morph from phrase 1's rules to phrase 4's, a step each phrase "
        "(held to the rules every phrase shares)",
        "  line 6: phrase 4:",
        "    line 7: density: at least 4 notes in every bar",
        # each section decoded under its rules' constraints (the morph is held to the shared ones)
        "phrase 1: 256 of 256 prior melodies decoded under the rules' constraints (temperature 0.5) obey every rule",
        "phrase 4: 256 of 256 prior melodies decoded under the rules' constraints (temperature 0.5) obey every rule",
    ]
    f.write_text("phrase 1:\nkey: C major\nphrase 3:\nkey: D major\n")
    res = run_cli("rules", "check", str(f))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and ":3:1: expected phrase 2" in res.stderr


def _shipped_plan():
    """Two shipped rules files as the sections of a plan, so that their shipped fits serve it."""
    a = (REPO / "rules" / "c_major_busy.rules").read_text()
    b = (REPO / "rules" / "pentatonic_calm.rules").read_text()
    return parse_plan(f"phrase 1:\n{a}\nphrases 2-3: morph\nphrase 4:\n{b}\n", "plan.rules")


def test_the_phrase_maker_plays_each_section_through_its_own_actor_and_morphs_between_them():
    from melody_lc.constrain import cached_fit, shipped_fits_dir
    from melody_lc.melody.train import load_model
    from melody_lc.midi.maker import PhraseMaker

    model, _ = load_model(REPO / "models" / "melody-16bar-folk")
    plan = _shipped_plan()
    fits = {rs.digest(): cached_fit(rs, model, [], search=(shipped_fits_dir(),)) for rs in plan.rulesets()}
    assert all(f is not None for f in fits.values()), "the shipped fits serve the plan's sections"
    first = plan.at(0).rules
    maker = PhraseMaker(model, first, fits[first.digest()], seed=5, plan=plan, fits=fits)

    # a morph decodes between the two sides' actors, t of the way
    _, _, step, move = maker._play(2)
    z = torch.randn(1, model.config.z_size, generator=torch.Generator().manual_seed(1))
    ga, gb = (fits[s.rules.digest()].actor(z, torch.zeros(1, 0)) for s in (step.source, step.target))
    assert step.t == pytest.approx(2 / 3) and torch.allclose(move(z), ga / 3 + 2 * gb / 3, atol=1e-6)

    played = [maker.next(k) for k in range(5)]
    infos = [info for _, info in played]
    assert [i["section"] for i in infos] == [
        "phrase 1 of 4",
        "phrase 2 of 4: morph 1/2 from phrase 1 to phrase 4",
        "phrase 3 of 4: morph 2/2 from phrase 1 to phrase 4",
        "phrase 4 of 4",
        "phrase 1 of 4",
    ]
    for k in (0, 3, 4):  # a section's phrase obeys every rule of its section, checked
        rules = plan.at(k).rules
        assert rules.satisfied(played[k][0][None]).all() and all(infos[k]["satisfied"]), infos[k]
    for k in (1, 2):  # a morph's phrase: no shared rules here; which rules of each side it meets is reported
        assert infos[k]["satisfied"] == [] and "unmet" not in infos[k]
        for key, side in (("source_met", plan.sections[0]), ("target_met", plan.sections[2])):
            ok = side.rules.satisfied(played[k][0][None])[0]
            assert infos[k][key] == [n for n, good in zip(side.rules.names, ok) if good]
    assert not np.array_equal(played[0][0], played[4][0])  # the walk goes on through the repeats


def test_the_shipped_plan_plays_out_of_the_box():
    """rules/sparse_to_busy.rules: every section with rules has its fit in models/fits."""
    from melody_lc.constrain import cached_fit, shipped_fits_dir
    from melody_lc.melody.train import load_model
    from melody_lc.rules.plan import load_plan

    model, _ = load_model(REPO / "models" / "melody-16bar-folk")
    plan = load_plan(REPO / "rules" / "sparse_to_busy.rules")
    assert plan.sectioned and [s.words for s in plan.sections] == ["phrase 1", "phrases 2-3", "phrase 4"]
    assert all(cached_fit(rs, model, [], search=(shipped_fits_dir(),)) is not None for rs in plan.rulesets())
