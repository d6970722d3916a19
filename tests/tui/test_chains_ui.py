"""`melody-lc live --chain`: the session's stream through a chain file on a real JACK port; the
chains table bypasses, moves and edits processors live and saves them back to the file."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time

import numpy as np

from melody_lc.chain.syntax import load_chains
from melody_lc.tui.app import LiveApp
from melody_lc.tui.screens import ParamsScreen
from tests.tui.conftest import REPO
from tests.tui.test_app import no_hanging_notes, until


def test_the_chains_table_bypasses_moves_edits_and_saves(shipped_model, tmp_path, receiver):
    from melody_lc.constrain import cached_fit, shipped_fits_dir
    from melody_lc.tui.session import LiveSession, LiveSettings

    daw = receiver("chain-tui")
    rules = tmp_path / "c_major_busy.rules"
    shutil.copy(REPO / "rules" / "c_major_busy.rules", rules)
    path = tmp_path / "live.chain"
    path.write_text(
        "# the lead, an octave up\ntempo: 600\n"
        "chain lead: generator(rules=c_major_busy.rules, seed=1) -> transpose(12) -> velocity(fixed=100)"
        " -> out(port=chain-tui)\n"
    )
    chains = load_chains(path)

    def find_fit(r):
        return cached_fit(r, shipped_model, [], search=(shipped_fits_dir(),))

    session = LiveSession(
        shipped_model, rules, LiveSettings(bpm=600.0), find_fit=find_fit, captures=tmp_path / "captures", chains=chains
    )
    app = LiveApp(session)
    marks = {}

    async def scenario():
        async with app.run_test(size=(140, 50)) as pilot:
            await until(pilot, lambda: session.current() is not None, what="the first phrase")
            assert session.lead_chain == "lead" and session.rack is not None
            table = app.query_one("#chains")
            assert table.row_count == 4 and app.focused is table
            assert [r["state"] for r in app._chain_rows] == ["source", "on", "on", "sink"]
            await pilot.pause(1.0)
            await pilot.press("down")  # the cursor on transpose
            marks["bypass"] = time.monotonic()
            await pilot.press("b")
            assert session.rack.runner("lead").slots[0].state == "bypassed"
            marks["bypassed"] = time.monotonic()  # a press can take long under load: both ends count
            assert app._chain_rows[1]["state"] == "bypassed"
            await pilot.press("full_stop")  # transpose after velocity now
            assert [s.link.name for s in session.rack.runner("lead").slots] == ["velocity", "transpose"]
            assert table.cursor_row == 2
            await pilot.press("e")
            assert isinstance(app.screen, ParamsScreen)
            box = app.screen.query_one("#param-semitones")
            box.value = "99"
            await pilot.press("enter")
            assert "semitones: expected a whole number from -48 to 48, found 99" in str(
                app.screen.query_one("#param-status").render()
            )
            box.value = "7"
            await pilot.press("enter")
            assert session.rack.runner("lead").slots[1].link.values["semitones"] == 7
            await pilot.press("escape")
            await pilot.press("w")
            await pilot.pause(1.0)
            marks["played"] = [r.tokens for r in session.played()]
            marks["failed"] = [s.failed for s in session.rack.runner("lead").slots]  # says why, if it fails below
            await pilot.press("q")

    asyncio.run(scenario())
    time.sleep(0.3)
    got = daw.stop()
    assert path.read_text() == (
        "# the lead, an octave up\ntempo: 600\nchain lead: generator(rules=c_major_busy.rules, "
        "seed=1)\n    -> velocity(fixed=100)\n    -> transpose(semitones=7, bypass=yes)\n"
        "    -> out(port=chain-tui)\n"
    )
    assert load_chains(path).chains[0].links[2].bypass  # it reads back
    ons = [(t, m) for t, m in got if m.type == "note_on" and m.velocity]
    assert ons and {m.velocity for _, m in ons} == {100}, marks["failed"]
    played = [int(x) for phrase in marks["played"] for x in np.asarray(phrase) if x < 128]  # in order
    heard = [(t, m.note) for t, m in ons][: len(played)]
    before = [n - p for (t, n), p in zip(heard, played) if t < marks["bypass"] - 0.05]
    after = [n - p for (t, n), p in zip(heard, played) if t > marks["bypassed"] + 0.1]
    assert before and set(before) == {12} and after and set(after) == {0}
    assert no_hanging_notes(got)
    assert [(m.type, m.control) for _, m in got[-2:]] == [("control_change", 123), ("control_change", 120)]


def test_live_takes_its_rules_from_the_chain_and_checks_the_file_first(tmp_path):
    bad = tmp_path / "bad.chain"
    bad.write_text("chain: generator(rules=x.rules) -> echo(repeats=0) -> out()\n")
    res = subprocess.run(
        [sys.executable, "-m", "melody_lc", "live", "--chain", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode == 2 and res.stderr.strip() == (
        f"melody-lc: error: {bad}:1:49: repeats: expected a whole number from 1 to 16, found 0"
    )
    none = tmp_path / "input.chain"
    none.write_text("chain: input() -> out()\n")
    res = subprocess.run(
        [sys.executable, "-m", "melody_lc", "live", "--chain", str(none)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode == 2 and "give --rules, or --chain with a chain whose source is generator" in res.stderr
