"""The chain file: parsing, checking against declarations, located errors, saving back."""

from __future__ import annotations

import pytest

from melody_lc.chain.registry import registry
from melody_lc.chain.spec import ChainError
from melody_lc.chain.syntax import load_chains, parse_chains, resolve

TABLE = registry()[0]

GOOD = """# two voices
tempo: 100

chain lead: generator(rules=lead.rules, seed=1)
    -> humanize(timing=8ms, velocity=10)
    -> scale(D, dorian) -> echo(1/8, bypass=yes)
    -> out(virtual=melody-lc)   # the DAW takes this port
chain: input(port="My Keys, port 1") -> out(port=Synth, channel=2)
"""


def check(text: str):
    return resolve(parse_chains(text, "x.chain"), TABLE)


def test_a_chain_file_reads_as_written(tmp_path):
    path = tmp_path / "two.chain"
    path.write_text(GOOD)
    cf = load_chains(path)
    assert cf.bpm == 100 and [c.name for c in cf.chains] == ["lead", "chain2"]
    lead = cf.chains[0]
    assert [link.name for link in lead.links] == ["generator", "humanize", "scale", "echo", "out"]
    assert lead.source.values["rules"] == str(tmp_path / "lead.rules")  # relative to the chain file
    assert lead.links[1].values["timing"].seconds(120) == pytest.approx(0.008)
    assert lead.links[2].values == {"key": 2, "scale": "dorian", "direction": "nearest"}  # positional
    assert lead.links[3].bypass and lead.links[3].values["delay"].text == "1/8"
    assert cf.chains[1].source.values["port"] == "My Keys, port 1" and cf.chains[1].sink.values["channel"] == 2


@pytest.mark.parametrize(
    "text, where, what",
    [
        ("chain: generator() -> out()", "1:8", "generator needs rules"),
        (
            "chain: generator(rules=a) -> humanise() -> out()",
            "1:30",
            "no processor named 'humanise'.*did you mean 'humanize'",
        ),
        ("chain: generator(rules=a) -> humanize(timing=8 ms) -> out()", "1:46", "timing: expected a duration"),
        ("chain: out() -> out()", "1:8", "'out' is a sink; the first link must be a source"),
        ("chain: generator(rules=a) -> echo(foo=1) -> out()", "1:35", "echo has no parameter 'foo'"),
        (
            "chain: generator(rules=a) -> echo(repeats=99) -> out()",
            "1:43",
            "repeats: expected a whole number from 1 to 16, found 99",
        ),
        (
            "chain: generator(rules=a) -> scale(C, major, up, 4) -> out()",
            "1:50",
            "scale takes 3 arguments; this one is extra",
        ),
        ("chain: generator(rules=a -> out()", "1:26", "expected ',' or '\\)' after an argument"),
        ("chian: generator(rules=a) -> out()", "1:1", "did you mean 'chain'"),
        ("chain: generator(rules=a)\n  -> scale(H) -> out()", "2:12", "key: expected a key"),
        ("chain: generator(rules=a)", "1:17", "up to a sink"),
        (
            "chain: generator(rules=a) -> transpose() -> humanize()",
            "1:45",
            "'humanize' is a transform; the last link must be a sink",
        ),
        ("tempo: 5\nchain: input() -> out()", "1:8", "tempo of 20-999"),
        ("chain a: input() -> out()\nchain a: input() -> out()", "2:1", "already on line 1"),
        ('chain: input(port="x) -> out()', "1:19", "no closing"),
        ("# nothing here\n", "1:1", "at least one"),
    ],
)
def test_errors_name_the_line_and_column(text, where, what):
    with pytest.raises(ChainError, match=f"^x.chain:{where}: .*{what}"):
        check(text)


def test_saving_back_keeps_other_lines_and_writes_changes(tmp_path):
    path = tmp_path / "two.chain"
    path.write_text(GOOD)
    cf = load_chains(path)
    lead = cf.chains[0]
    lead.links[1].set("timing", "12ms")
    lead.links[3].bypass = False
    lead.links[2], lead.links[3] = lead.links[3], lead.links[2]
    cf.save()
    text = path.read_text()
    assert text.startswith("# two voices\ntempo: 100\n\nchain lead: generator(rules=lead.rules, seed=1)")
    assert "humanize(timing=12ms, velocity=10)" in text and "bypass" not in text
    assert text.index("echo(delay=1/8)") < text.index("scale(key=D, scale=dorian)")
    assert 'chain: input(port="My Keys, port 1") -> out(port=Synth, channel=2)' in text  # unnamed stays unnamed
    again = load_chains(path)  # what was saved reads back to the same chains
    assert [link.text() for link in again.chains[0].links] == [link.text() for link in lead.links]
    assert again.chains[0].links[1].values["timing"].seconds(120) == pytest.approx(0.012)
    # saved twice, the file does not grow or move
    again.save()
    assert path.read_text() == text


def test_a_changed_parameter_is_checked():
    from melody_lc.chain.api import ParamError

    cf = check("chain: generator(rules=a) -> echo() -> out()")
    with pytest.raises(ParamError, match="repeats: expected a whole number from 1 to 16"):
        cf.chains[0].links[1].set("repeats", "0")
    with pytest.raises(ParamError, match="echo has no parameter 'bogus'"):
        cf.chains[0].links[1].set("bogus", "0")


def test_the_shipped_chain_files_check():
    from tests.chain.conftest import REPO

    files = sorted((REPO / "rules").glob("*.chain"))
    assert files
    for path in files:
        cf = load_chains(path)
        for spec in cf.chains:
            if spec.source.name == "generator":
                assert (path.parent / spec.source.written["rules"]).exists()


@pytest.mark.parametrize(
    "text, where, what",
    [
        (":x", "1:1", "found ':'"),
        ("chain lead input() -> out()", "1:1", "expected 'chain NAME:'"),
        ("tempo: e", "1:8", "tempo of 20-999 bpm, found 'e'"),
        ("chain: input() -> transpose(semitone = 3) -> out()", "1:29", "transpose has no parameter 'semitone'"),
    ],
)
def test_more_errors_point_at_the_right_place(text, where, what):
    with pytest.raises(ChainError, match=f"^x.chain:{where}: .*{what}"):
        check(text)


def test_quotes_comments_and_continuations():
    cf = check('chain: input(virtual="my #1 port") # a comment\n#   -> transpose(12)\n\n    -> out()   # the end\n')
    spec = cf.chains[0]
    assert spec.source.values["virtual"] == "my #1 port" and [link.name for link in spec.links] == ["input", "out"]
    assert (spec.first_line, spec.last_line) == (1, 4)
    link = check("chain: input() -> echo() -> out()").chains[0].links[1]
    from melody_lc.chain.api import ParamError

    with pytest.raises(ParamError, match="double quote"):
        link.set("delay", '1/8"')


def test_a_plugin_that_failed_to_load_is_named_with_the_reason():
    with pytest.raises(ChainError, match="x.chain:1:19: the plugin 'wobble' failed to load: ImportError: nope"):
        resolve(
            parse_chains("chain: input() -> wobble() -> out()", "x.chain"),
            TABLE,
            [("wobble = wob:Wobble", "ImportError: nope")],
        )


def test_a_rules_file_can_hold_its_own_chain_section(tmp_path):
    from melody_lc.rules import load_rules
    from tests.chain.conftest import REPO

    own = tmp_path / "own.rules"
    own.write_text(
        (REPO / "rules" / "c_major_busy.rules").read_text()
        + "\ntempo: 110\nchain lead: generator(seed=2)\n    -> humanize(timing=6ms)  # a little life\n"
        "    -> out(virtual=melody-lc)\n"
    )
    rules = load_rules(own)  # the rules language skips the chain lines...
    assert rules.digest() == load_rules(REPO / "rules" / "c_major_busy.rules").digest()
    cf = load_chains(own)  # ...and the chain reads only them; generator() plays this very file's rules
    assert cf.bpm == 110 and cf.chains[0].source.values["rules"] == str(own)
    cf.chains[0].links[1].set("timing", "9ms")
    cf.save()
    assert load_rules(own).digest() == rules.digest() and "humanize(timing=9ms)" in own.read_text()
    own.write_text(own.read_text().replace("timing=9ms", "timing=9"))
    with pytest.raises(ChainError, match=rf"^{own}:\d+:\d+: timing: expected a duration") as err:
        load_chains(own)
    line = own.read_text().splitlines()[err.value.line - 1]
    assert line[err.value.column - 1 :].startswith("9)")


@pytest.mark.parametrize(
    "text, what",
    [
        ("chain: input() -> quantize(grid=0ms) -> out()", "grid: expected a duration .* above 0, found 0ms"),
        ("chain: input() -> velocity(min=100, max=20) -> out()", "velocity: min \\(100\\) is above max \\(20\\)"),
        ("chain: input() -> notelength(min=1/4, max=1/16) -> out()", "notelength: min \\(1/4\\) is longer than max"),
    ],
)
def test_values_are_checked_together_too(text, what):
    with pytest.raises(ChainError, match=f"^x.chain:1:\\d+: {what}"):
        check(text)
    from melody_lc.chain.api import ParamError

    link = check("chain: input() -> velocity(min=10, max=20) -> out()").chains[0].links[1]
    with pytest.raises(ParamError, match="min \\(30\\) is above max \\(20\\)"):
        link.set("min", "30")
    assert link.values["min"] == 10
