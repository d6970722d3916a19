"""`melody-lc chain` on real JACK ports: several chains at once, each to its own port and channel."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import mido
import numpy as np
import pytest

from melody_lc.melody.pitches import MODES
from tests.chain.conftest import REPO, hanging
from tests.chain.test_plugins import _loop_file


def run_chain(path, *args, timeout=120):
    env = {**os.environ, "MELODY_LC_MIDI_API": "jack", "MELODY_LC_CACHE": str(path.parent / "cache")}
    return subprocess.run(
        [sys.executable, "-m", "melody_lc", "chain", str(path), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


def test_two_chains_play_at_once_each_to_its_own_port_and_channel(tmp_path, receiver):
    lead_rx, bass_rx = receiver("lead-rx"), receiver("bass-rx")
    loop = _loop_file(tmp_path / "loop.mid", bars=1)
    chain = tmp_path / "two.chain"
    chain.write_text(f"""# a generated lead over a bass loop
tempo: 300
chain lead: generator(rules={REPO / "rules" / "c_major_busy.rules"}, seed=2)
    -> humanize(timing=5ms, velocity=5) -> scale(C, major)
    -> out(port=lead-rx, channel=1)
chain bass: file({loop.name}) -> transpose(octaves=-2) -> out(port=bass-rx, channel=2, record=bass.mid)
""")
    assert run_chain(chain, "--check").returncode == 0
    t0 = time.monotonic()
    res = run_chain(chain, "--seconds", "5")
    assert res.returncode == 0, res.stderr
    lead = [(t, m) for t, m in lead_rx.stop() if t > t0]
    bass = [(t, m) for t, m in bass_rx.stop() if t > t0]
    lead_on = [m for _, m in lead if m.type == "note_on" and m.velocity]
    bass_on = [(t, m) for t, m in bass if m.type == "note_on" and m.velocity]
    assert len(lead_on) >= 20 and {m.channel for _, m in lead if hasattr(m, "channel")} == {0}
    assert all(m.note % 12 in MODES["major"] for m in lead_on)
    assert len(bass_on) >= 40 and {m.channel for _, m in bass if hasattr(m, "channel")} == {1}
    assert {m.note + 24 for _, m in bass_on} == {60, 62, 64, 65, 67, 69, 71, 72}
    # the loop's eighths at 300 bpm are 0.1 s apart: on time within a JACK period and some jitter
    # (nearly all of them; a shared 2-core machine may stall one thread for a few periods, once:
    # how late notes come under load is benchmarks/chain_latency.py's to measure, not a test's)
    gaps = np.abs(np.diff([t for t, _ in bass_on]) - 0.1)
    assert np.median(gaps) < 0.002 and np.quantile(gaps, 0.9) < 0.015 and gaps.max() < 0.05, sorted(gaps)[-5:]
    assert not hanging([m for _, m in lead]) and not hanging([m for _, m in bass])
    rec = [m for m in mido.MidiFile(tmp_path / "bass.mid").tracks[0] if not m.is_meta]
    assert [m.note for m in rec if m.type == "note_on" and m.velocity] == [m.note for _, m in bass_on]


def test_chain_errors_are_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.chain"
    bad.write_text("chain: file(nothing.mid) -> out()\n")
    res = run_chain(bad)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith(
        f"melody-lc: error: {bad}:1:8: cannot read {tmp_path / 'nothing.mid'} as a MIDI file: No such file or directory"
    )
    assert run_chain(bad, "--check").stderr == res.stderr
    missing = run_chain(tmp_path / "missing.chain")
    assert missing.returncode == 2 and "missing.chain:1:1: cannot read the chain file" in missing.stderr
    rules = tmp_path / "broken.rules"
    rules.write_text("key: H major\n")
    bad.write_text(f"chain: generator(rules={rules.name}) -> out()\n")
    res = run_chain(bad)
    assert res.returncode == 2 and res.stderr.strip().startswith(f"melody-lc: error: {rules}:1:")


def _wait_for_port(name: str, inputs: bool, timeout: float = 30.0) -> str:
    from melody_lc.midi.ports import list_ports

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        names = list_ports()[0 if inputs else 1]
        hit = [n for n in names if name in n]
        if hit:
            return hit[0]
        time.sleep(0.2)
    raise AssertionError(f"no port {name} appeared")


def _play_into_inputs(tmp_path, receiver, attempt: int):
    """Notes played into two virtual inputs of a running chain: (exit code, stderr, what the keys
    chain's output port received, the notes played)."""
    from melody_lc.midi.ports import open_output

    keys, tape, rx_name = f"keys{attempt}in", f"tape{attempt}in", f"input-rx{attempt}"
    rx = receiver(rx_name)
    chain = tmp_path / "in.chain"
    chain.write_text(
        f"chain keys: input(virtual={keys}) -> transpose(12) -> velocity(fixed=64) -> out(port={rx_name})\n"
        f"chain tape: input(virtual={tape}) -> record(take.mid)\n"
    )
    env = {**os.environ, "MELODY_LC_MIDI_API": "jack"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "melody_lc", "chain", str(chain), "--seconds", "6"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    played = [60, 62, 64, 65, 67]
    try:
        ports = [open_output(_wait_for_port(n, inputs=False)) for n in (f"{keys}:", f"{tape}:")]
        # the ports open while the chain is built; what arrives before it runs is dropped
        while (line := proc.stderr.readline()) and "running at" not in line:
            pass
        for note in played:
            for port in ports:
                port.send(mido.Message("note_on", note=note, velocity=100))
            time.sleep(0.1)
            for port in ports:
                port.send(mido.Message("note_off", note=note))
            time.sleep(0.05)
        for port in ports:
            port.close()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, err, rx.stop(), played


def test_notes_played_into_an_input_come_out_processed(tmp_path, receiver):
    """A real JACK server with the dummy driver, on a shared machine, now and then stalls for a
    moment ('engine may now behave abnormally' in its log) and drops what was sent meanwhile; so a
    run where nothing at all arrived is played once more. A chain that passes nothing on fails both."""
    for attempt in range(2):
        code, err, got, played = _play_into_inputs(tmp_path, receiver, attempt)
        assert code == 0, err
        if any(m.type == "note_on" for _, m in got):
            break
    ons = [m for _, m in got if m.type == "note_on" and m.velocity]
    assert [(m.note, m.velocity) for m in ons] == [(n + 12, 64) for n in played]
    assert not hanging([m for _, m in got])
    rec = [
        m
        for m in mido.MidiFile(tmp_path / "take.mid").tracks[0]
        if not m.is_meta and m.type == "note_on" and m.velocity
    ]
    assert [m.note for m in rec] == played


def test_the_constraint_transform_answers_each_phrase_in_the_next_one(tmp_path, receiver):
    """A chromatic 16-bar loop through constrain(c_major_busy) at 480 bpm: each phrase is heard moved
    toward C major during the next one (the shipped model and its shipped fit). The notes of an
    answer due before its search ended are skipped (stderr says how many), so the run lasts until
    phrase 2 begins: phrase 1 hears phrase 0's answer."""
    from melody_lc.melody import Melody
    from melody_lc.midi.files import write_phrases

    rx = receiver("constrain-rx")
    chromatic = Melody.from_notes([(60 + (i * 5) % 13, 2 * i, 2 * i + 2) for i in range(128)]).tokens
    write_phrases([chromatic], tmp_path / "chromatic.mid", bpm=480)
    chain = tmp_path / "c.chain"
    chain.write_text(
        f"tempo: 480\nchain: file(chromatic.mid) -> constrain({REPO / 'rules' / 'c_major_busy.rules'}, "
        "velocity=70) -> out(port=constrain-rx)\n"
    )
    t0 = time.monotonic()
    res = run_chain(chain, "--seconds", "16.5")  # a phrase lasts 8 s
    assert res.returncode == 0, res.stderr
    got = [(t, m) for t, m in rx.stop() if t > t0]
    ons = [m for _, m in got if m.type == "note_on" and m.velocity]
    assert len(ons) > 20 and {m.velocity for m in ons} == {70}, res.stderr  # only the answer is heard (dry=no)
    in_key = np.mean([m.note % 12 in MODES["major"] for m in ons])
    before = np.mean([t % 12 in MODES["major"] for t in chromatic if t < 128])
    assert in_key > before + 0.2, (in_key, before)
    assert not hanging([m for _, m in got])


def test_a_generator_takes_the_rules_open_parameters_by_name(tmp_path, shipped_model):
    from melody_lc.chain.checks import check_files
    from melody_lc.chain.sources import generator_source
    from melody_lc.chain.syntax import load_chains
    from melody_lc.constrain import cached_fit, shipped_fits_dir
    from melody_lc.rules import load_rules

    rules_path = REPO / "rules" / "any_key_major.rules"
    chain = tmp_path / "g.chain"
    chain.write_text(f"chain: generator(rules={rules_path}, tonic=G, seed=4) -> out()\n")
    cf = load_chains(chain)
    check_files(cf)
    link = cf.chains[0].source
    assert link.open_values == {"tonic": 7} and link.text().endswith("tonic=G)")
    rules = load_rules(rules_path)
    fitted = cached_fit(rules, shipped_model, [], search=(shipped_fits_dir(),))

    def share(tonic_link):
        from types import SimpleNamespace

        from melody_lc.midi.schedule import Clock

        port = SimpleNamespace(clock=Clock(), send=lambda msg: None)  # only phrases are made here, nothing played
        maker = generator_source(tonic_link, (rules, shipped_model, fitted), port).engine.maker
        pitches = np.concatenate([t[t < 128] for t in (maker.next()[0] for _ in range(6))])
        return {k: np.mean([(p - k) % 12 in MODES["major"] for p in pitches]) for k in (3, 7)}

    g = share(link)
    assert g[7] > 0.9 and g[7] > g[3] + 0.2, g
    chain.write_text(f"chain: generator(rules={rules_path}, tonic=Eb, seed=4) -> out()\n")
    eb = load_chains(chain)
    check_files(eb)
    assert eb.chains[0].source.open_values == {"tonic": 3}
    e = share(eb.chains[0].source)
    assert e[3] > 0.9 and e[3] > e[7] + 0.2, e


def test_open_parameter_errors(tmp_path):
    rules = REPO / "rules" / "any_key_major.rules"
    bad = tmp_path / "o.chain"
    for text, what in (
        (f"chain: generator(rules={rules}, tonic=H) -> out()", "tonic: expected a pitch class"),
        (
            f"chain: generator(rules={rules}, tonics=G) -> out()",
            "generator has no parameter 'tonics', and it is not an open parameter of any_key_major.rules",
        ),
        (
            f"chain: input() -> constrain({rules}) -> out()",
            "constrain needs a value for every open parameter of any_key_major.rules; missing: tonic",
        ),
    ):
        bad.write_text(text + "\n")
        res = run_chain(bad, "--check")
        assert res.returncode == 2 and res.stderr.startswith(f"melody-lc: error: {bad}:1:") and what in res.stderr, (
            res.stderr
        )


def test_ctrl_c_stops_a_chain_with_every_note_ended(tmp_path, receiver):
    import signal

    rx = receiver("sigint-rx")
    loop = _loop_file(tmp_path / "loop.mid", bars=2)
    chain = tmp_path / "long.chain"
    chain.write_text(
        f"tempo: 120\nchain: file({loop.name}) -> notelength(length=2bars) -> echo(1/4, repeats=4) "
        "-> out(port=sigint-rx)\n"
    )
    env = {**os.environ, "MELODY_LC_MIDI_API": "jack"}
    proc = subprocess.Popen(  # -X faulthandler: SIGABRT prints where every thread is
        [sys.executable, "-X", "faulthandler", "-m", "melody_lc", "chain", str(chain)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    while sum(m.type == "note_on" for _, m in rx.messages()) < 6:
        assert time.monotonic() - t0 < 60 and proc.poll() is None, "no note arrived"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"the chain did not stop within 30 s of Ctrl-C; its threads were at:\n{err[-6000:]}")
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    time.sleep(0.2)
    got = rx.stop()
    assert not hanging([m for _, m in got])  # long notes and queued echoes all ended
    assert [(m.type, m.control) for _, m in got[-2:]] == [("control_change", 123), ("control_change", 120)]


def test_a_generator_plays_a_plan_and_constrain_refuses_one(tmp_path, shipped_model):
    """generator(rules=...) of a file of phrase sections plays them in turn, as `stream` does;
    the constraint transform, which works on one phrase's rules, says so plainly."""
    from argparse import Namespace
    from types import SimpleNamespace

    from melody_lc.chain.checks import check_files
    from melody_lc.chain.sources import generator_source
    from melody_lc.chain.spec import ChainError
    from melody_lc.chain.syntax import load_chains
    from melody_lc.cli.chain import make_prepare
    from melody_lc.midi.schedule import Clock

    plan = REPO / "rules" / "sparse_to_busy.rules"
    chain = tmp_path / "g.chain"
    chain.write_text(f"chain: generator(rules={plan}, seed=2) -> out()\n")
    cf = load_chains(chain)
    check_files(cf)
    args = Namespace(model=str(REPO / "models" / "melody-16bar-folk"), data=None, quick=False, rounds=None)
    prepared = make_prepare(args, shipped_model)(str(plan))  # the shipped fits of both sections
    port = SimpleNamespace(clock=Clock(), send=lambda msg: None)
    maker = generator_source(cf.chains[0].source, prepared, port).engine.maker
    sections = [maker.next(k)[1]["section"] for k in range(5)]
    assert sections[0] == "phrase 1 of 4" and sections[3] == "phrase 4 of 4" and "morph 1/2" in sections[1]
    chain.write_text(f"chain: input() -> constrain(rules={plan}) -> out()\n")
    with pytest.raises(ChainError) as e:
        check_files(load_chains(chain))
    assert "constrain takes the rules of one phrase" in str(e.value) and ":1:" in str(e.value)
