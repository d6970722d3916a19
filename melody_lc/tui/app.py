"""``melody-lc live``: the terminal instrument that plays, steers and captures constrained melodies.

The screen, top to bottom: the transport line; a piano roll of the phrase now playing with its
playhead, and of the next phrase once it is ready; the rules with each one's state for the phrase
now playing; the log; the bindings. Everything the app does goes through :class:`LiveSession`
(``session.py``), which drives the same live engine as ``melody-lc stream``. The engine generates
on its own threads; fits run in a Textual worker thread; the screen is refreshed by a timer and by
``call_from_thread`` from those threads, so it never waits for torch.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Label, ProgressBar, RichLog, Static

from melody_lc.melody.encoding import BAR_STEPS
from melody_lc.midi.ports import PortError, list_ports
from melody_lc.rules.form import chord_halves
from melody_lc.tui.chains_panel import ChainsPanel
from melody_lc.tui.pianoroll import PianoRoll
from melody_lc.tui.screens import ChoiceScreen, HelpScreen, ValuesScreen
from melody_lc.tui.session import LiveSession, value_text


# --------------------------------------------------------------------------------------------------
class LiveApp(ChainsPanel, App):
    """The main screen. ``fit(rules, progress) -> Fitted`` makes a fit for rules that have none
    (run in a worker); ``autoplay`` starts the stream as the app opens."""

    CSS_PATH = "app.tcss"
    TITLE = "melody-lc live"
    BINDINGS = [
        Binding("space", "toggle_play", "Play/stop"),
        Binding("escape", "panic", "Panic"),
        Binding("plus,equals_sign", "tempo(5)", "Tempo +5"),
        Binding("minus", "tempo(-5)", "Tempo -5", key_display="-"),
        Binding("k", "value('tonic', 1)", "Key up"),
        Binding("K", "value('tonic', -1)", "Key down", show=False),
        Binding("d", "value('density', 1)", "Density +1", show=False),
        Binding("D", "value('density', -1)", "Density -1", show=False),
        Binding("v", "values", "Open parameters", show=False),
        Binding("t", "temperature(0.1)", "Temperature +0.1", show=False),
        Binding("T", "temperature(-0.1)", "Temperature -0.1", show=False),
        Binding("c", "clock", "Clock mode", show=False),
        Binding("o", "output", "Output port", show=False),
        Binding("i", "input", "Input port (call and response)", show=False),
        Binding("a", "synth", "Built-in synth on/off", show=False),
        Binding("right_square_bracket", "channel(1)", "Channel +1", show=False, key_display="]"),
        Binding("left_square_bracket", "channel(-1)", "Channel -1", show=False, key_display="["),
        Binding("l", "hold", "Hold"),
        Binding("m", "mutate", "Mutate"),
        Binding("s", "capture(1)", "Capture"),
        Binding("S", "capture_last", "Capture last N", show=False),
        Binding("r", "reload", "Reload rules", show=False),
        Binding("f", "rules_file", "Rules file", show=False),
        Binding("b", "chain_bypass", "Bypass the chosen processor", show=False),
        Binding("comma", "chain_move(-1)", "Move the processor earlier", show=False, key_display=","),
        Binding("full_stop", "chain_move(1)", "Move the processor later", show=False, key_display="."),
        Binding("e", "chain_edit", "Edit the processor's parameters", show=False),
        Binding("w", "chain_save", "Write the chains back to their file", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit", priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, key_display="ctrl+c"),
    ]

    def __init__(
        self,
        session: LiveSession,
        fit: Callable | None = None,
        autoplay: bool = True,
        watch_interval: float = 0.5,
        fit_rounds=None,
    ) -> None:
        super().__init__()
        self.session, self.fit_fn, self.autoplay = session, fit, autoplay
        self.watch_interval, self.fit_rounds = watch_interval, fit_rounds
        self._shown: object = None  # the phrase record on the roll and in the rules table
        self._upcoming: object = None  # the phrase record on the 'next' roll
        self._counts: list[int] = []  # per rule: phrases that met it
        self._applied: list[int] = []  # per rule: phrases held to it
        self._chain_rows: list[dict] = []
        self._ui_thread = threading.get_ident()
        self._closed = False
        session.log = self.log_line

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="transport")
        yield Static(id="values-line")
        yield Label("now playing", classes="roll-title", id="now-title")
        yield PianoRoll("press space to play", id="now")
        yield Label("next", classes="roll-title")
        yield PianoRoll("(made while the phrase before it plays)", id="next")
        if self.session.chains is not None:
            yield DataTable(id="chains", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="bottom"):
            yield DataTable(id="rules", cursor_type="none", zebra_stripes=True)
            yield RichLog(id="log", wrap=True, markup=False, max_lines=500)
        yield Static(id="rules-error")
        yield ProgressBar(id="fit", show_eta=False)
        yield Footer()

    def on_mount(self) -> None:
        try:  # SIGTERM ends the app like q (panic, ports closed), with exit code 130
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.call_later, self._terminated)
        except (NotImplementedError, RuntimeError, ValueError):  # no signals here (Windows, a thread)
            pass
        self.sub_title = self.session.rules_path.name
        self.query_one("#log", RichLog).border_title = "log"
        self._fill_rules_table()
        if self.session.chains is not None:
            chains = self.query_one("#chains", DataTable)
            chains.border_title = f"{self.session.chains.path.name}: ↑↓ choose, b bypass, , . move, e edit, w save"
            self._fill_chains()
            chains.focus()
            self.set_interval(1.0, self._while_running(self._fill_chains))
        self.set_interval(0.1, self._while_running(self._tick))
        self.set_interval(self.watch_interval, self._while_running(self._watch_rules))
        if self.session.pending_rules is not None or self.session.fitted is None:
            if self.session.pending_rules is None:
                self.session.pending_rules = self.session.rules
            self.log_line(
                f"{self.session.rules_path.name} has no fit yet: playing unconstrained melodies until the fit is ready"
                if self.session.pending_plan is None
                else f"{self.session.rules_path.name}: its sections are fitted one by one; phrase 1's rules play "
                "until every section has its fit"
            )
            self.start_fit()
        if self.autoplay:
            self.action_toggle_play()
        self._tick()  # the first frame shows the state at once, not after the timer's first beat

    def key_map(self) -> list[tuple[str, str]]:
        """(key, description) of every binding, as the help screen shows them."""
        rows = []
        for b in self.BINDINGS:
            keys = b.key_display or " / ".join(self.get_key_display(Binding(k, "")) for k in b.key.split(","))
            rows.append((keys, b.description))
        return rows

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for b in self.BINDINGS:
            if b.action not in ("quit",):
                yield SystemCommand(
                    b.description,
                    f"key: {self.get_key_display(Binding(b.key.split(',')[0], ''))}",
                    lambda action=b.action: self.run_action(action),
                )

    # -- logging from any thread -------------------------------------------------------------------
    def log_line(self, message: str) -> None:
        if self._closed:
            return
        if threading.get_ident() == self._ui_thread:
            self._write_log(message)
        else:
            try:
                self.call_from_thread(self._write_log, message)
            except RuntimeError:  # the app is closing
                pass

    def _write_log(self, message: str) -> None:
        try:
            self.query_one("#log", RichLog).write(message)
        except Exception:  # noqa: BLE001 - before mount or after unmount: nothing to show it in
            pass

    # -- the timer: playhead, phrases, rules -------------------------------------------------------
    def _while_running(self, fn: Callable[[], None]) -> Callable[[], None]:
        """A timer callback that does nothing once the app is shutting down.

        Textual marks the app as not running before it unmounts the screens, and an interval timer
        can still fire in between, when the widgets it updates are already gone (seen in CI).
        """

        def tick() -> None:
            if self.is_running:
                fn()

        return tick

    def _tick(self) -> None:
        s = self.session
        engine = s.engine
        if engine is not None:
            engine.poll()
            if engine.error:
                self.log_line(f"stream stopped: {engine.error}")
                s.stop()
        cur = s.current()
        now = self.query_one("#now", PianoRoll)
        nxt = self.query_one("#next", PianoRoll)
        played = s.played()
        shown = cur or (played[-1] if played else None)
        now.playhead = int(s.engine.step()) if cur is not None and s.engine is not None else None
        up = s.upcoming()
        if up is not self._upcoming:  # the rolls take new tokens only when the phrase changes
            self._upcoming = up
            nxt.tokens = None if up is None else tuple(int(x) for x in up.tokens)
        self.query_one("#now-title", Label).update(
            "now playing" if cur is not None or shown is None else "last played (stopped)"
        )
        chords = tuple(chord_halves(s.rules))
        now.chords = nxt.chords = chords if any(chords) else None
        if shown is not self._shown:
            self._shown = shown
            now.tokens = None if shown is None else tuple(int(x) for x in shown.tokens)
            self._phrase_changed(shown)
        self._update_status()

    def _watch_rules(self) -> None:
        result = self.session.check_rules_file()
        if result is not None:
            self._rules_file_changed(result)

    def _rules_file_changed(self, result: str) -> None:
        err = self.query_one("#rules-error", Static)
        if result == "error":
            err.update(self.session.rules_error)
            err.display = True
            return
        err.display = False
        if result == "needs fit":
            self.start_fit()
        elif result == "applied":
            self._fill_rules_table()

    def _fill_rules_table(self) -> None:
        table = self.query_one("#rules", DataTable)
        table.clear(columns=True)
        table.add_column("now", key="now", width=3)
        table.add_column("played", key="played", width=9)
        table.add_column("rule (line: what it asks)", key="rule")
        for r in self.session.rules.rules:
            table.add_row("", "", f"{r.line}: {r.describe()}", key=str(r.line))
        table.border_title = self.session.rules_path.name
        self._counts = [0] * len(self.session.rules)
        self._applied = [0] * len(self.session.rules)  # phrases held to each rule (a plan's differ)
        self._shown = None

    def _phrase_changed(self, rec) -> None:
        ok = self.session.satisfaction(rec)
        table = self.query_one("#rules", DataTable)
        if ok is None or len(ok) != len(self._counts):
            return
        for k, (rule, good) in enumerate(zip(self.session.rules.rules, ok, strict=True)):
            if good is None:  # a rule of another section of the plan
                table.update_cell(str(rule.line), "now", Text("·", style="dim"))
                continue
            self._counts[k] += int(good)
            self._applied[k] += 1
            table.update_cell(
                str(rule.line), "now", Text("✓", style="bold green") if good else Text("✗", style="bold red")
            )
            table.update_cell(
                str(rule.line), "played", f"{self._counts[k] / self._applied[k]:.0%} of {self._applied[k]}"
            )
        n = rec.info.get("interventions")
        section = f"{rec.info['section']} · " if "section" in rec.info else ""
        if n is not None:  # how much the rules' mask had to overrule the decoder for this phrase
            table.border_subtitle = (
                section
                + f"mask overruled the decoder {n:g}x"
                + (f", {rec.info['redraws']} redrawn" if rec.info.get("redraws") else "")
            )
        elif section:
            table.border_subtitle = section.rstrip(" ·")

    def _update_status(self) -> None:
        s, st = self.session, self.session.settings
        state = "▶ playing" if s.playing else "■ stopped"
        if s.holding:
            state += " (hold)"
        bpm = f"{st.bpm:g} bpm"
        if s.engine is not None and s.engine.follower is not None and s.engine.follower.bpm:
            bpm = f"{s.engine.follower.bpm:.1f} bpm (DAW)"
        cur = s.current()
        where = f"phrase {cur.index + 1}, bar {int(s.engine.step()) // BAR_STEPS + 1}" if cur is not None else ""
        inp = f"   in {st.input}" if st.input else ""
        synth = " + synth" if st.synth and s.chains is None else ""
        self.query_one("#transport", Static).update(
            f"{state}   {bpm}   clock {st.clock}   out {s.output_name}{synth}   ch {st.channel + 1}{inp}   "
            f"temp {st.temperature:.2f}   {where}"
        )
        if s.rules.open:
            parts = [f"{n} = {value_text(s.rules, n, v)}" for n, v in s.values.items()]
            line = "open: " + ", ".join(parts) + "   (k/K key, d/D density, v selector)"
        else:
            line = "no open parameters (write 'key: ? major' or 'density: >= ? notes per bar' to steer them live)"
        if s.pending_rules is not None:
            line += "   · new rules wait for their fit"
        self.query_one("#values-line", Static).update(line)

    # -- fitting in a worker -----------------------------------------------------------------------
    def start_fit(self) -> None:
        if self.fit_fn is None:
            self.log_line("no fitting here (no dataset given): the old rules keep playing")
            return
        bar = self.query_one("#fit", ProgressBar)
        rounds = self.fit_rounds  # a number, or a function of the rules (constrain.fit_rounds)
        bar.update(total=rounds(self.session.pending_rules) if callable(rounds) else rounds, progress=0)
        bar.display = True
        self._fit(self.session.pending_rules)

    @work(thread=True, exclusive=True, group="fit")
    def _fit(self, rules) -> None:
        def progress(entry: dict) -> None:
            self.call_from_thread(self._fit_progress, entry)

        try:
            fitted = self.fit_fn(rules, progress)
        except Exception as e:  # noqa: BLE001 - reported in the log; the old rules keep playing
            self.call_from_thread(self._fit_failed, f"{type(e).__name__}: {e}" if not str(e) else str(e))
            return
        self.call_from_thread(self._fit_done, rules, fitted)

    def _fit_progress(self, entry: dict) -> None:
        bar = self.query_one("#fit", ProgressBar)
        stage = entry.get("stage", 0)
        if stage and entry["round"] == 0 and self.fit_rounds is not None:  # a further stage: as many rounds again
            rounds = self.fit_rounds
            bar.update(total=bar.total + (rounds(self.session.pending_rules) if callable(rounds) else rounds))
        bar.advance(1)
        self.log_line(
            f"fit{f' stage {stage + 1}' if stage else ''} round {entry['round'] + 1}: actor satisfies the rules in "
            f"{entry['actor_satisfaction']:.0%} of fresh samples"
        )

    def _fit_failed(self, message: str) -> None:
        self.query_one("#fit", ProgressBar).display = False
        self.log_line(f"fit failed: {message}; the old rules keep playing")

    def _fit_done(self, rules, fitted) -> None:
        self.query_one("#fit", ProgressBar).display = False
        if self.session.pending_rules is not rules:
            return  # the file changed again while fitting; that fit is on its way
        self.session.apply_rules(rules, fitted)
        what = f" {rules.section_words}" if rules.section_words else ""
        self.log_line(f"fitted{what}: {fitted.meta['satisfaction']:.0%} of fresh samples meet every rule")
        if self.session.pending_rules is not None:  # a plan: the next section's fit
            self.start_fit()
            return
        self._fill_rules_table()

    # -- actions -----------------------------------------------------------------------------------
    def _try(self, fn, *args):
        try:
            return fn(*args)
        except PortError as e:
            self.log_line(f"port: {e}")
            self.bell()
            return None

    def action_toggle_play(self) -> None:
        self._try(self.session.toggle)
        self._update_status()

    def action_panic(self) -> None:
        self.session.panic()
        self._update_status()

    def action_tempo(self, delta: float) -> None:
        self.session.set_bpm(self.session.settings.bpm + delta)
        self._update_status()

    def action_value(self, name: str, delta: int) -> None:
        if name not in self.session.rules.open:
            self.log_line(f"the rules leave no {name} open: write '?' in the rules file to steer it live")
            return
        self.session.step_value(name, delta)
        self._update_status()

    def set_value(self, name: str, value) -> None:
        self.session.set_value(name, value)
        self._update_status()

    def action_values(self) -> None:
        if not self.session.rules.open:
            self.log_line("these rules have no open parameters")
            return
        self.push_screen(ValuesScreen(self.session))

    def action_temperature(self, delta: float) -> None:
        self.session.set_temperature(self.session.settings.temperature + delta)
        self.log_line(f"temperature {self.session.settings.temperature:.2f} from the next phrase")

    def action_clock(self) -> None:
        clock = self._try(self.session.cycle_clock)  # None with chains: they keep melody-lc's clock
        if clock:
            self.log_line(f"clock: {clock}")

    def action_channel(self, delta: int) -> None:
        self.session.set_channel(self.session.settings.channel + delta)
        self.log_line(f"channel {self.session.settings.channel + 1} from the next phrase")

    def _choose_port(self, inputs: bool, title: str, first: list[tuple[str, object]], apply) -> None:
        """A list of ports to pick from; escape changes nothing."""
        try:
            names = list_ports()[0 if inputs else 1]
        except PortError as e:
            self.log_line(f"port: {e}")
            return
        ours = self.session.settings.port_name
        choices = first + [(n, n) for n in names if not n.startswith(ours)]
        self.push_screen(
            ChoiceScreen(title, [(label, (value,)) for label, value in choices]),
            lambda picked: picked is not None and self._try(apply, picked[0]),
        )

    def action_output(self) -> None:
        if self.session.lead_chain is not None:
            self.log_line(f"the stream goes out through chain {self.session.lead_chain}: its out(...) names the port")
            return
        self._choose_port(
            False,
            "send to which output?",
            [(f"{self.session.settings.port_name} (a virtual port of melody-lc's own)", None)],
            self.session.set_output,
        )

    def action_input(self) -> None:
        self._choose_port(
            True,
            "listen to which input? what you play there is answered",
            [("none (no call and response)", None), ("melody-lc-in (a virtual input)", "virtual")],
            self.session.set_input,
        )

    def action_synth(self) -> None:
        from melody_lc.errors import UserError

        try:
            self.session.toggle_synth()
        except UserError as e:  # no FluidSynth, a bad sound font, no audio output: said, and nothing else changes
            self.log_line(f"built-in synth: {e}")
        self._update_status()

    def action_hold(self) -> None:
        self.session.toggle_hold()
        self._update_status()

    def action_mutate(self) -> None:
        self.session.mutate()

    def action_capture(self, last: int) -> Path | None:
        return self.session.capture(last)

    def action_capture_last(self) -> Path | None:
        return self.session.capture(self.session.settings.capture_last)

    def action_reload(self) -> None:
        result = self.session.check_rules_file(force=True)
        self._rules_file_changed(result or "applied")

    def action_rules_file(self) -> None:
        here = Path.cwd()
        choices = []
        for p in self.session.rules_files():
            try:
                label = str(p.resolve().relative_to(here))
            except ValueError:
                label = str(p)
            choices.append((label, p))
        self.push_screen(ChoiceScreen("play which rules file? (it is watched for changes)", choices), self._switch)

    def _switch(self, path) -> None:
        if path is None:
            return
        result = self.session.switch_rules(path)
        self.sub_title = self.session.rules_path.name
        self._rules_file_changed(result or "applied")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def _terminated(self) -> None:
        self.shutdown()
        self.exit(return_code=130)

    async def action_quit(self) -> None:
        self.shutdown()
        self.exit()

    def shutdown(self) -> None:
        """Stop with panic and close the ports (idempotent: every way out calls it)."""
        if not self._closed:
            self.session.close()
            self._closed = True

    def on_unmount(self) -> None:
        self.shutdown()
