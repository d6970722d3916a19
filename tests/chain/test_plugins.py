"""Plugins found through the entry-point group, listed by `melody-lc plugins`, run in a chain on
real JACK ports, and bypassed when they raise with the stream intact and no note left hanging."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import mido
import pytest

from tests.chain.conftest import REPO, hanging

PLUGIN = """
from melody_lc.chain import Param, Processor


class Octaver(Processor):
    name = "octaver"
    summary = "adds a note an interval above every note"
    params = (Param("interval", "int", 12, min=-24, max=24, help="semitones"),)

    def process(self, events, ctx):
        out = list(events)
        for e in events:
            if e.is_note:
                out.append(e.with_msg(note=min(127, max(0, e.msg.note + self.values["interval"]))))
        return out


class Boom(Processor):
    name = "boom"
    summary = "passes notes on, then raises"
    params = (Param("after", "int", 20, min=0, help="note messages before it raises"),)

    def process(self, events, ctx):
        n = sum(e.is_note for e in events)
        self.values["after"] -= n
        if self.values["after"] < 0:
            raise RuntimeError("boom went off")
        return [e.with_msg(velocity=101) if e.is_note_on else e for e in events]


class Future(Processor):
    name = "future"
    api_version = 2
"""


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    (tmp_path / "octaver_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "octaver_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: octaver-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[melody_lc.processors]\noctaver = octaver_plugin:Octaver\nboom = octaver_plugin:Boom\n"
        "future = octaver_plugin:Future\nmissing = no_such_module:Thing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "octaver_plugin", raising=False)  # another test's module of that name
    return tmp_path


def _env(plugin_path, **more):
    return {**os.environ, "PYTHONPATH": f"{plugin_path}{os.pathsep}{REPO}", **more}


def test_plugins_are_discovered_and_broken_ones_listed_with_the_reason(plugin_path):
    from melody_lc.chain.registry import registry

    table, failed = registry()
    assert table["octaver"].origin == "plugin octaver_plugin" and "boom" in table
    reasons = dict(failed)
    assert "processor API 2; this melody-lc has API 1" in reasons["future = octaver_plugin:Future"]
    assert reasons["missing = no_such_module:Thing"].startswith("ModuleNotFoundError")
    res = subprocess.run(
        [sys.executable, "-m", "melody_lc", "plugins"], capture_output=True, text=True, env=_env(plugin_path)
    )
    assert res.returncode == 0, res.stderr
    assert "octaver [plugin octaver_plugin]: adds a note an interval above every note" in res.stdout
    assert "interval: a whole number from -24 to 24; default 12. semitones" in res.stdout
    assert "humanize [built in]" in res.stdout and "generator [built in]" in res.stdout
    assert "plugin failed to load: missing = no_such_module:Thing: ModuleNotFoundError" in res.stdout
    assert "plugin failed to load: future = octaver_plugin:Future: TypeError: written for processor API 2" in res.stdout


def test_plugin_parameters_are_checked_before_anything_runs(plugin_path, tmp_path):
    chain = tmp_path / "bad.chain"
    chain.write_text("chain: input() -> octaver(interval=30) -> out()\n")
    res = subprocess.run(
        [sys.executable, "-m", "melody_lc", "chain", str(chain)],
        capture_output=True,
        text=True,
        env=_env(plugin_path, MELODY_LC_MIDI_API="jack"),
        timeout=60,
    )
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        f"melody-lc: error: {chain}:1:36: interval: expected a whole number from -24 to 24, found 30"
    ]


def _loop_file(path, bars: int = 2):
    """A .mid loop: eighth notes up a C major scale, 120 bpm."""
    track = mido.MidiTrack()
    for i in range(bars * 8):
        track.append(
            mido.Message("note_on", note=60 + [0, 2, 4, 5, 7, 9, 11, 12][i % 8], velocity=80, time=0 if i == 0 else 120)
        )
        track.append(mido.Message("note_off", note=60 + [0, 2, 4, 5, 7, 9, 11, 12][i % 8], velocity=0, time=120))
    mido.MidiFile(type=0, ticks_per_beat=480, tracks=[track]).save(path)
    return path


def test_a_plugin_runs_in_a_chain_and_when_it_raises_the_stream_goes_on(plugin_path, tmp_path, receiver):
    rx = receiver("plugin-rx")
    loop = _loop_file(tmp_path / "loop.mid")
    chain = tmp_path / "p.chain"
    chain.write_text(f"tempo: 240\nchain: file({loop.name}) -> octaver(7) -> boom(after=40) -> out(port=plugin-rx)\n")
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "melody_lc", "chain", str(chain), "--seconds", "6"],
        capture_output=True,
        text=True,
        env=_env(plugin_path, MELODY_LC_MIDI_API="jack"),
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "boom bypassed: raised RuntimeError: boom went off" in res.stderr
    got = [(t, m) for t, m in rx.stop() if t > t0]
    ons = [(t, m) for t, m in got if m.type == "note_on" and m.velocity]
    by_boom = [m for _, m in ons if m.velocity == 101]
    after = [m for _, m in ons if m.velocity == 80]
    assert len(by_boom) >= 18 and len(after) >= 40  # the loop went on after boom failed (6 s at 240 bpm: 96 notes)
    assert {m.note - 60 for m in after} >= {0, 2, 4, 7, 12, 14, 16, 19}  # with octaver's fifths, boom bypassed
    assert not hanging([m for _, m in got])
    assert any(m.type == "control_change" and m.control == 123 for _, m in got)


def test_the_readme_example_plugin_works(tmp_path, monkeypatch):
    """The plugin of docs/chains.md, installed through its entry point, listed, and run."""
    readme = (REPO / "docs" / "chains.md").read_text()
    code = readme[readme.index("# octaver_plugin.py") :]
    code = code[: code.index("```")]
    toml = readme[readme.index('[project.entry-points."melody_lc.processors"]') :]
    toml = toml[: toml.index("```")]
    (tmp_path / "octaver_plugin.py").write_text(code)
    dist = tmp_path / "octaver_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: octaver-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(toml.replace('"', "").replace("[project.entry-points.", "["))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "octaver_plugin", raising=False)  # another test's module of that name
    from melody_lc.chain.registry import registry
    from melody_lc.chain.syntax import load_chains
    from tests.chain.conftest import drive, notes, stream

    table, failed = registry()
    assert "octaver" in table and not failed, failed
    chain = tmp_path / "o.chain"
    chain.write_text("chain: input() -> octaver(interval=7, velocity=0.5) -> out()\n")
    link = load_chains(chain).chains[0].links[1]
    proc = link.cls(**link.values)
    from melody_lc.melody import Melody

    events = stream(Melody.from_notes([(60, 0, 4), (64, 4, 8), (60, 8, 12)]).tokens)
    out = notes(drive(proc, events))
    assert [(p, v) for _, p, _, v, _ in out] == [(60, 90), (67, 45), (64, 90), (71, 45), (60, 90), (67, 45)]
    assert not hanging(drive(link.cls(**link.values), events))
