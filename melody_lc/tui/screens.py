"""The live screen's dialogs: the key map, a list to choose from, open parameters, a processor's
parameters."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, OptionList, Select, Static

from melody_lc.chain.api import ParamError
from melody_lc.tui.session import LiveSession, value_text


class HelpScreen(ModalScreen):
    """Every key of the main screen, from its bindings (so the list is never out of date)."""

    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        table = DataTable(id="keys", cursor_type="none", zebra_stripes=True)
        table.add_columns("key", "what it does")
        for b in self.app.key_map():
            table.add_row(*b)
        with Vertical(id="help"):
            yield Label("melody-lc live: keys (ctrl+p: the same actions by name; escape closes)", id="help-title")
            yield table


class ChoiceScreen(ModalScreen):
    """Pick one of a list (ports); dismisses with the chosen value, or nothing on escape."""

    BINDINGS = [Binding("escape", "dismiss", "Cancel")]

    def __init__(self, title: str, choices: list[tuple[str, object]]) -> None:
        super().__init__()
        self.title_text, self.choices = title, choices

    def compose(self) -> ComposeResult:
        with Vertical(id="choice"):
            yield Label(self.title_text)
            yield OptionList(*[label for label, _ in self.choices], id="choices")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index][1])


class ValuesScreen(ModalScreen):
    """A selector for each open parameter of the rules (a tonic, a density...)."""

    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(self, session: LiveSession) -> None:
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        rules = self.session.rules
        with Vertical(id="values"):
            yield Label("open parameters (from the next phrase; escape closes)")
            for name, spec in rules.open.items():
                choices = (
                    range(spec[1]) if spec[0] == "category" else range(math.ceil(spec[1]), math.floor(spec[2]) + 1)
                )
                options = [(value_text(rules, name, v), v) for v in choices]
                now = self.session.values[name]
                yield Label(name)
                yield Select(
                    options,
                    value=int(now) if spec[0] == "category" else round(now),
                    allow_blank=False,
                    id=f"value-{name}",
                )

    def on_select_changed(self, event: Select.Changed) -> None:
        name = event.select.id.removeprefix("value-")
        if event.value != self.session.values.get(name):
            self.app.set_value(name, event.value)


class ParamsScreen(ModalScreen):
    """The parameters of one processor in a chain: each one an input, applied on Enter and checked
    against the processor's declaration."""

    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(self, session: LiveSession, chain: str, index: int, link) -> None:
        super().__init__()
        self.session, self.chain, self.index, self.link = session, chain, index, link

    def compose(self) -> ComposeResult:
        from melody_lc.chain.api import format_value

        with Vertical(id="params"):
            yield Label(f"{self.link.name} in chain {self.chain} (Enter applies a value; escape closes)")
            if not self.link.cls.params:
                yield Label("(no parameters)")
            for p in self.link.cls.params:
                now = self.link.written.get(p.name)
                if now is None:
                    now = "" if p.required else format_value(p, p.default_value())
                yield Label(f"{p.name}: {p.expected()}" + (f" ({p.help})" if p.help else ""))
                yield Input(value=str(now), id=f"param-{p.name}", disabled=p.type == "path")
            yield Static(id="param-status")

    def on_input_submitted(self, event: Input.Submitted) -> None:

        name = event.input.id.removeprefix("param-")
        status = self.query_one("#param-status", Static)
        try:
            self.session.chain_set(self.chain, self.index, name, event.value)
        except ParamError as e:
            status.update(Text(str(e), style="bold red"))
            return
        status.update(Text(f"{name} = {self.link.written[name]}", style="green"))
