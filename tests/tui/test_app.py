"""``melody-lc live`` driven headless with Textual's pilot: keys steer the stream on a real JACK
port, hold and capture write files, a broken rules file shows where it is broken while the old
rules keep playing, quitting ends with panic, fits run in a worker with a progress bar."""

from __future__ import annotations

import asyncio
import re
import time

import mido
import numpy as np
import pytest

from melody_lc.melody import Melody
from melody_lc.melody.pitches import pitch_name
from melody_lc.midi.files import phrases_to_midi
from melody_lc.midi.ports import open_output
from melody_lc.midi.schedule import PULSES_PER_PHRASE, PULSES_PER_STEP
from melody_lc.tui.app import LiveApp
from melody_lc.tui.pianoroll import PianoRoll
from tests.tui.conftest import REPO


async def until(pilot, condition, timeout: float = 30.0, what: str = "") -> None:
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await pilot.pause(0.05)


def no_hanging_notes(messages) -> bool:
    sounding = set()
    for _, m in messages:
        if m.type == "note_on" and m.velocity > 0:
            sounding.add((m.channel, m.note))
        elif m.type in ("note_on", "note_off"):
            sounding.discard((m.channel, m.note))
    return not sounding


def test_keys_change_tempo_key_hold_and_capture_and_quit_panics(make_session, receiver):
    daw = receiver("daw-tui")
    session = make_session("any_key_major.rules", bpm=600.0, output="daw-tui")
    app = LiveApp(session)

    async def scenario():
        async with app.run_test(size=(140, 44)) as pilot:
            await until(pilot, lambda: session.current() is not None, what="the first phrase")
            assert session.values == {"tonic": 0}
            await pilot.press("plus")
            assert session.settings.bpm == 605 and session.engine.tempo.bpm == 605
            await pilot.press("minus", "minus")
            assert session.engine.tempo.bpm == 595
            await pilot.press("k", "k")  # the tonic two semitones up: D major from the next phrase
            assert session.values == {"tonic": 2}
            await pilot.press("v")  # the selector: the same parameter, from a list
            select = app.screen.query_one("#value-tonic")
            assert select.value == 2
            select.value = 9
            await pilot.pause(0.1)
            assert session.values == {"tonic": 9}
            select.value = 2
            await pilot.pause(0.1)
            await pilot.press("escape")
            assert session.values == {"tonic": 2}
            first = session.current().index
            await until(pilot, lambda: (session.current() or session.played()[0]).index > first, what="the next phrase")
            assert session.current().info["values"] == {"tonic": 2.0}
            assert "tonic = D" in str(app.query_one("#values-line").render())
            # the piano roll shows the phrase now playing, with the playhead inside it
            roll = app.query_one("#now", PianoRoll)
            await until(
                pilot,
                lambda: roll.tokens == tuple(int(x) for x in session.current().tokens),
                what="the roll to show the phrase playing",
            )  # the screen is refreshed 10 times a second
            assert 0 <= roll.playhead < 256
            # hold: the phrases that follow repeat the one playing when it was pressed
            await pilot.press("l")
            held = session.current()
            assert session.holding and "(hold)" in str(app.query_one("#transport").render())
            await until(
                pilot,
                lambda: session.current() is not None and session.current().index >= held.index + 2,
                what="two phrases after hold",
            )
            for rec in session.played()[held.index + 1 :]:
                assert rec.info["source"] == "hold" and np.array_equal(rec.tokens, held.tokens)
            # mutate: the next phrase is a small latent step from this one (and hold ends)
            await pilot.press("l")
            assert not session.holding
            await until(
                pilot,
                lambda: session.current() is not None and session.current().info["source"] == "generated",
                what="a generated phrase",
            )
            base = session.current()
            # every generated phrase obeys its rules, and the rules table says how much the mask overruled the decoder
            assert all(base.info["satisfied"]) and isinstance(base.info["interventions"], int)
            await until(
                pilot,
                lambda: "mask overruled the decoder" in str(app.query_one("#rules").border_subtitle),
                what="the interventions under the rules table",
            )
            await pilot.press("m")
            await until(
                pilot,
                lambda: session.current() is not None and session.current().index > base.index,
                what="the mutated phrase",
            )
            mutated = session.current()
            walk = session.settings.variation * (2 * base.info["z"].numel()) ** 0.5  # a usual step of the walk
            assert float((mutated.info["z"] - base.info["z"]).norm()) < 0.6 * walk
            # capture: the phrase playing, then the last 4 phrases, as .mid files
            k = session.current().index
            await pilot.press("s")
            path, recs = session.last_capture
            assert path.name == "take-001.mid" and len(recs) == 1 and recs[0].index in (k, k + 1)
            assert Melody.from_midi_file(path) == Melody(recs[0].tokens)
            await pilot.press("S")
            path, recs = session.last_capture
            assert path.name == "take-002.mid" and len(recs) == 4
            assert [r.index for r in recs] == list(range(recs[-1].index - 3, recs[-1].index + 1))
            assert recs[-1].index in (k, k + 1)
            heard = [m for m in mido.MidiFile(path).tracks[0] if not m.is_meta]
            want = [m for m in phrases_to_midi([r.tokens for r in recs]).tracks[0] if not m.is_meta]
            assert heard == want and sum(m.type == "note_on" for m in heard) > 40
            assert sorted(p.name for p in session.captures.iterdir()) == [
                "take-001.mid",
                "take-002.mid",
            ]  # no temp files left
            await pilot.press("q")
        return session

    asyncio.run(scenario())
    time.sleep(0.3)
    got = daw.stop()
    notes = [m for _, m in got if m.type in ("note_on", "note_off")]
    assert len(notes) > 50
    assert no_hanging_notes(got)
    assert [(m.type, m.control) for _, m in got[-2:]] == [("control_change", 123), ("control_change", 120)]
    assert session.out is None and not session.playing  # ports closed


def test_a_broken_rules_file_shows_where_and_the_old_rules_keep_playing(make_session, receiver):
    receiver("daw-rules")
    session = make_session("any_key_major.rules", bpm=600.0, output="daw-rules")
    app = LiveApp(session, watch_interval=0.1)
    path = session.rules_path

    async def scenario():
        async with app.run_test(size=(140, 44)) as pilot:
            await until(pilot, lambda: session.current() is not None, what="the first phrase")
            path.write_text("key: ? major\ndensity: >= 3 notse per bar\n")
            error = app.query_one("#rules-error")
            await until(pilot, lambda: error.display, what="the error line")
            shown = str(error.render())
            assert re.search(r"any_key_major\.rules:2:\d+: ", shown), shown
            assert "notes" in shown  # expected what, at that place
            old_digest, played = session.rules.digest(), len(session.played())
            await until(pilot, lambda: len(session.played()) > played + 1, what="two more phrases")
            assert session.playing and session.rules.digest() == old_digest
            assert session.engine.transport.late_phrases == 0
            # a good file again (this one has a shipped fit): it plays from the next phrase
            path.write_text("key: C major\ndensity: >= 3 notes per bar\nrange: C4 .. C6\n")
            await until(pilot, lambda: not error.display and len(session.rules) == 3, what="the new rules")
            table = app.query_one("#rules")
            assert table.row_count == 3
            changed_at = len(session.played())
            await until(pilot, lambda: len(session.played()) > changed_at + 1, what="a phrase of the new rules")
            assert "values" not in session.played()[-1].info or session.played()[-1].info["values"] == {}
            # another rules file, chosen by key from those beside it and the shipped examples
            await pilot.press("f")
            options = app.screen.query_one("#choices")
            labels = [str(options.get_option_at_index(k).prompt) for k in range(options.option_count)]
            assert labels[0].endswith("any_key_major.rules")  # the file beside comes first
            options.highlighted = next(k for k, label in enumerate(labels) if label.endswith("dorian_folk.rules"))
            await pilot.press("enter")
            assert session.rules_path.name == "dorian_folk.rules" and app.sub_title == "dorian_folk.rules"
            assert session.pending_rules is None and session.fitted is not None  # its shipped fit
            assert any(r.kind.name == "key" and r.params["mode"] == "dorian" for r in session.rules.rules)
            switched_at = len(session.played())
            await until(pilot, lambda: len(session.played()) > switched_at, what="a phrase of dorian_folk")
            await pilot.press("q")

    asyncio.run(scenario())


def test_a_rules_file_without_a_fit_is_fitted_in_a_worker_with_a_progress_bar(make_session, misc_folk_dataset):
    from melody_lc.constrain import fit_rules
    from melody_lc.engine import FitConfig
    from melody_lc.melody.dataset import MelodyDataset

    session = make_session("c_major_busy.rules")
    windows = MelodyDataset(misc_folk_dataset[0]).windows("train")
    config = FitConfig(
        rounds=2,
        initial_samples=256,
        samples_per_round=128,
        initial_critic_steps=30,
        critic_steps=20,
        actor_steps=20,
        stages=1,
    )
    rounds_seen = []

    def fit(rules, progress):
        def slow(entry):  # long enough for the test to look at the screen between rounds
            rounds_seen.append(entry["round"])
            progress(entry)
            time.sleep(0.5)

        return fit_rules(rules, session.model, windows, config, progress=slow)

    app = LiveApp(session, fit, autoplay=False, watch_interval=0.1, fit_rounds=config.rounds)

    async def scenario():
        async with app.run_test(size=(140, 44)) as pilot:
            session.rules_path.write_text("key: G major\nrests: <= 30%\n")  # no fit anywhere for these
            bar = app.query_one("#fit")
            await until(pilot, lambda: bar.display, what="the progress bar")
            assert session.pending_rules is not None and len(session.rules) == 3  # the old rules until the fit
            await pilot.press("plus")  # the UI answers while the worker fits
            assert session.settings.bpm == 125
            await until(pilot, lambda: bar.progress >= 1, what="a round on the bar")
            await until(pilot, lambda: not bar.display, timeout=120, what="the end of the fit")
            assert rounds_seen == [0, 1] and bar.total == 2
            assert session.pending_rules is None and session.fitted is not None
            assert [r.kind.name for r in session.rules.rules] == ["key", "rests"]
            assert app.query_one("#rules").row_count == 2
            await pilot.press("q")

    asyncio.run(scenario())


def test_help_lists_every_key_and_the_palette_offers_the_same_actions(make_session):
    session = make_session("c_major_busy.rules")
    app = LiveApp(session, autoplay=False)

    async def scenario():
        async with app.run_test(size=(140, 44)) as pilot:
            await pilot.press("question_mark")
            table = app.screen.query_one("#keys")
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            assert len(rows) == len(LiveApp.BINDINGS)
            described = {r[1] for r in rows}
            for b in LiveApp.BINDINGS:
                assert b.description in described
            assert any(r[0] == "space" for r in rows) and any(r[0] == "?" for r in rows)
            await pilot.press("escape")
            readme = (REPO / "docs" / "live.md").read_text()
            keymap = readme[readme.index("| key | what it does |") :]
            for keys, _ in rows:  # the documented key map has every key
                for key in keys.split(" / "):
                    assert f"`{key}`" in keymap, key
            commands = {c.title for c in app.get_system_commands(app.screen)}
            for needed in (
                "Play/stop",
                "Hold",
                "Mutate",
                "Capture",
                "Capture last N",
                "Panic",
                "Key up",
                "Output port",
                "Input port (call and response)",
                "Clock mode",
                "Reload rules",
            ):
                assert needed in commands
            # the clock key cycles internal -> send -> follow (stopped: nothing to restart)
            await pilot.press("c")
            assert session.settings.clock == "send"
            await pilot.press("right_square_bracket", "t")
            assert session.settings.channel == 1 and session.settings.temperature == 0.6
            await pilot.press("k")  # c_major_busy leaves no key open: said so in the log, nothing changes
            assert session.values == {}
            await pilot.press("q")

    asyncio.run(scenario())


def test_a_timer_that_fires_while_the_app_shuts_down_does_nothing(make_session):
    # Textual marks the app as not running before it unmounts the screens; an interval timer that
    # fires in between found no '#now' and failed a CI run. After the app has gone the widgets are
    # gone too, so the guarded callbacks must do nothing while the bare ones still raise.
    from textual.css.query import NoMatches

    session = make_session("c_major_busy.rules")
    app = LiveApp(session, autoplay=False)

    async def scenario():
        async with app.run_test(size=(140, 44)) as pilot:
            await pilot.pause()
            app._while_running(app._tick)()  # running: the tick does its work
        assert not app.is_running
        with pytest.raises(NoMatches):
            app._tick()
        app._while_running(app._tick)()
        app._while_running(app._watch_rules)()

    asyncio.run(scenario())


def test_call_and_response_from_the_input_chosen_in_the_ui(make_session, receiver):
    daw = receiver("daw-call")
    session = make_session("c_major_busy.rules", bpm=600.0)
    player = open_output(None, virtual_name="player-tui")  # the keyboard, made before the stream starts
    app = LiveApp(session, autoplay=False)

    async def choose(pilot, key: str, part: str) -> None:
        await pilot.press(key)
        options = app.screen.query_one("#choices")
        labels = [str(options.get_option_at_index(k).prompt) for k in range(options.option_count)]
        options.highlighted = next(k for k, label in enumerate(labels) if part in label)
        await pilot.press("enter")

    async def scenario():
        async with app.run_test(size=(140, 44)) as pilot:
            await choose(pilot, "o", "daw-call")  # the output, chosen in the UI
            assert session.settings.output and "daw-call" in session.settings.output
            await pilot.press("o", "escape")  # escape changes nothing
            assert "daw-call" in session.settings.output
            await pilot.press("i")
            options = app.screen.query_one("#choices")
            labels = [str(options.get_option_at_index(k).prompt) for k in range(options.option_count)]
            pick = next(k for k, label in enumerate(labels) if "player-tui" in label)
            options.highlighted = pick
            await pilot.press("enter")
            assert session.settings.input and "player-tui" in session.settings.input
            await pilot.press("space")
            await until(pilot, lambda: session.current() is not None, what="the first phrase")
            # The call is played on the stream's own clock, not on wall time: it starts early in a
            # phrase (a capture ends at the next phrase boundary), and each note is held until the
            # capture has heard it and two sixteenths have passed on the stream.
            engine, capture = session.engine, session.engine.capture
            # a bar at 600 bpm (0.4 s) is shorter than a JACK server starved of CPU may hold a note
            # back: four bars of silence end this capture
            engine.config.pause_bars = 4
            per_step, per_phrase = PULSES_PER_STEP, PULSES_PER_PHRASE

            async def wait_steps(n):
                target = engine.position() + n * per_step
                await until(pilot, lambda: engine.position() >= target, what=f"{n} steps of the stream")

            await until(pilot, lambda: engine.position() % per_phrase < per_phrase / 8, what="a phrase's start")
            for k, pitch in enumerate([60, 62, 64, 65, 67, 65, 64, 62]):
                player.send(mido.Message("note_on", note=pitch, velocity=90))
                await until(
                    pilot, lambda k=k: len(capture.notes) == k + 1, what=f"note {k + 1} heard ({capture.notes})"
                )
                await wait_steps(2)
                player.send(mido.Message("note_off", note=pitch, velocity=0))
            await until(
                pilot,
                lambda: any(r.info.get("source") == "response" for r in session.played()),
                timeout=60,
                what="the answer",
            )
            answer = next(r for r in session.played() if r.info["source"] == "response")
            assert len(Melody(np.array(answer.info["called"])).notes()) == 8
            # the panic key: everything stops at once, every note ends, then CC 123 and CC 120
            await pilot.press("escape")
            assert not session.playing
            await pilot.pause(0.3)
            got = daw.messages()
            assert [(m.type, m.control) for _, m in got[-2:]] == [("control_change", 123), ("control_change", 120)]
            assert no_hanging_notes(got)
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        player.close()
    assert no_hanging_notes(daw.stop())


def test_piano_roll_rows_name_the_pitches_they_hold():
    from melody_lc.tui.pianoroll import roll_rows, row_label

    scale = np.array([60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79])  # C major, C4 .. G5
    assert [row_label(r) for r in roll_rows(scale, 24)][:3] == ["G5", "F#5", "F5"]  # it fits: every semitone
    for height in (4, 7, 10):  # it does not: the phrase's own pitches, shared only where needed
        rows = roll_rows(scale, height)
        assert len(rows) == height and sorted(np.concatenate(rows)) == sorted(scale)
        for row in rows:
            names = row_label(row).split("-")
            assert all(n in {pitch_name(int(p)) for p in row} for n in names)
    assert [row_label(r) for r in roll_rows(scale, 12)] == [pitch_name(int(p)) for p in scale[::-1]]


def test_main_screen_at_80_by_24_labels_each_row_by_what_it_holds(make_session):
    """A common default terminal: the roll folds a C major phrase by its own pitches, no Ab or Bb."""
    from melody_lc.midi.live import PhraseRecord
    from melody_lc.tui.pianoroll import roll_rows, row_label
    from tests.conftest import scale_notes

    session = make_session("c_major_busy.rules")
    tokens = Melody.from_notes([(p, s, e) for p, s, e, _ in scale_notes(16)]).tokens
    session.history.append(PhraseRecord(0, tokens, {"source": "generated"}))
    app = LiveApp(session, autoplay=False)

    async def scenario():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.2)
            roll = app.query_one("#now", PianoRoll)
            lines = str(roll.render()).split("\n")
            sounding = Melody(tokens).notes()
            rows = roll_rows(np.array([p for p, _, _ in sounding]), roll.size.height)
            assert [line.split()[0] for line in lines] == [row_label(r) for r in rows]
            played = {pitch_name(p) for p, _, _ in sounding}
            assert all(name in played for line in lines for name in line.split()[0].split("-"))
            await pilot.press("q")

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_main_screen_snapshot(make_session, snap_compare, size):
    """The main screen, stopped, showing a phrase (a C major scale walk) and its rules."""
    from melody_lc.midi.live import PhraseRecord
    from tests.conftest import scale_notes

    session = make_session("c_major_busy.rules")
    tokens = Melody.from_notes([(p, s, e) for p, s, e, _ in scale_notes(16)]).tokens
    session.history.append(PhraseRecord(0, tokens, {"source": "generated"}))
    assert snap_compare(LiveApp(session, autoplay=False), terminal_size=size, press=["_"])


def test_a_plan_plays_its_sections_in_turn_and_fits_each_section_it_lacks(shipped_model, tmp_path, receiver):
    """A rules file of phrase sections in the UI: the section without a fit is fitted in the worker
    (here the fit hands back the shipped one, to keep the test short), then each phrase plays its
    section, and the rules table marks each phrase's own rules and leaves the others'."""
    from melody_lc.constrain import cached_fit, shipped_fits_dir
    from melody_lc.rules.plan import load_plan
    from melody_lc.tui.session import LiveSession, LiveSettings

    daw = receiver("daw-plan")
    a = (REPO / "rules" / "c_major_busy.rules").read_text()
    b = (REPO / "rules" / "pentatonic_calm.rules").read_text()
    path = tmp_path / "song.rules"
    path.write_text(f"phrase 1:\n{a}\nphrase 2: morph\nphrase 3:\n{b}\n")
    calm = load_plan(path).sections[2].rules.digest()

    def shipped(r):
        return cached_fit(r, shipped_model, [], search=(shipped_fits_dir(),))

    fitted_here = []

    def fit(rules, progress):
        fitted_here.append(rules.section_words)
        return shipped(rules)

    session = LiveSession(
        shipped_model,
        path,
        LiveSettings(bpm=900.0, output="daw-plan"),
        find_fit=lambda r: None if r.digest() == calm else shipped(r),
        captures=tmp_path / "captures",
    )
    assert session.pending_rules.section_words == "phrase 3" and session.maker.plan is None
    app = LiveApp(session, fit, watch_interval=0.1, fit_rounds=1)
    seen = {}

    async def scenario():
        async with app.run_test(size=(140, 44)) as pilot:
            await until(pilot, lambda: session.maker.plan is not None, what="the plan, once every section is fitted")
            assert fitted_here == ["phrase 3"] and session.pending_rules is None
            assert app.query_one("#rules").row_count == 7  # c_major_busy's 3 rules and pentatonic_calm's 4

            def section_of(words):
                rec = session.current()
                if rec is not None and rec.info.get("section", "").startswith(words):
                    seen[words] = rec
                return words in seen

            for words in ("phrase 3 of 3", "phrase 1 of 3"):
                await until(pilot, lambda w=words: section_of(w), timeout=60, what=words)
            await until(pilot, lambda: "of 3" in str(app.query_one("#rules").border_subtitle), what="the section shown")
            await pilot.press("q")

    asyncio.run(scenario())
    daw.stop()
    calm_rec, busy_rec = seen["phrase 3 of 3"], seen["phrase 1 of 3"]
    ok = session.satisfaction(calm_rec)
    assert ok[:3] == [None] * 3 and all(ok[3:]), ok  # held to the pentatonic rules, and to them alone
    ok = session.satisfaction(busy_rec)
    assert all(ok[:3]) and ok[3:] == [None] * 4, ok
