"""The chains table of the live screen (``melody-lc live --chain FILE``) and its keys: bypass,
reorder, edit a processor's parameters, save. Mixed into :class:`~melody_lc.tui.app.LiveApp`."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from melody_lc.tui.screens import ParamsScreen


class ChainsPanel:
    """Needs the app's ``session``, ``query_one``, ``push_screen``, ``log_line`` and ``bell``."""

    def _fill_chains(self) -> None:
        """The chains table from the session: a row per link, with its state and CPU per call."""
        if self.session.chains is None:
            return
        table = self.query_one("#chains", DataTable)
        row = table.cursor_row
        table.clear(columns=True)
        table.add_columns("chain", "#", "processor", "state", "CPU/call")
        self._chain_rows = self.session.chain_rows()
        for r in self._chain_rows:
            state = r["state"] if not r["failed"] else f"failed: {r['failed']}"
            style = {"on": "green", "bypassed": "yellow", "failed": "bold red"}.get(r["state"], "dim")
            cpu = "" if r["cpu_ms"] is None else f"{r['cpu_ms']:.3f} ms (max {r['max_ms']:.2f})"
            table.add_row(
                r["chain"],
                "" if r["index"] is None else str(r["index"] + 1),
                r["link"].text(),
                Text(state, style=style),
                cpu,
            )
        if self._chain_rows:
            table.move_cursor(row=min(row, len(self._chain_rows) - 1))

    def chosen_processor(self) -> dict | None:
        """The transform on the chains table's cursor row (None, with a word why, for others)."""
        if self.session.chains is None:
            self.log_line("no chain file: start with `melody-lc live --chain FILE`")
            return None
        row = self._chain_rows[self.query_one("#chains", DataTable).cursor_row]
        if row["index"] is None:
            self.log_line(
                f"{row['link'].name} is the chain's {row['state']}: only the processors between can be changed here"
            )
            return None
        return row

    def action_chain_bypass(self) -> None:
        row = self.chosen_processor()
        if row is not None:
            self.session.chain_bypass(row["chain"], row["index"])
            self._fill_chains()

    def action_chain_move(self, delta: int) -> None:
        row = self.chosen_processor()
        if row is not None:
            j = self.session.chain_move(row["chain"], row["index"], delta)
            table = self.query_one("#chains", DataTable)
            self._fill_chains()
            table.move_cursor(row=table.cursor_row + (j - row["index"]))

    def action_chain_edit(self) -> None:
        row = self.chosen_processor()
        if row is not None:
            self.push_screen(
                ParamsScreen(self.session, row["chain"], row["index"], row["link"]), lambda _: self._fill_chains()
            )

    def action_chain_save(self) -> None:
        if self.session.chains is None:
            self.log_line("no chain file: start with `melody-lc live --chain FILE`")
            return
        try:
            self.session.chain_save()
        except OSError as e:
            self.log_line(f"cannot save {self.session.chains.path}: {e.strerror or e}")
            self.bell()
