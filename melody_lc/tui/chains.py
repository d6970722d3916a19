"""The chain file of ``melody-lc live --chain FILE``, as the session drives it: a row per link,
bypass, reorder, set a parameter, save. :class:`~melody_lc.tui.session.LiveSession` has these
methods; they use its ``chains`` (the chain file), ``rack`` (the running chains, or None) and
``log``."""

from __future__ import annotations

from pathlib import Path


class ChainControls:
    """Mixed into LiveSession (see the module docstring)."""

    def _runner(self, chain: str):
        return self.rack.runner(chain) if self.rack is not None else None

    def _spec(self, chain: str):
        return next(c for c in self.chains.chains if c.name == chain)

    def chain_rows(self) -> list[dict]:
        """A row per link of every chain: chain, index (of a transform; None for a source or sink),
        link, state (source, sink, on, bypassed, failed), why it failed, CPU per call (ms)."""
        rows = []
        for spec in self.chains.chains if self.chains is not None else []:
            runner = self._runner(spec.name)
            for k, link in enumerate(spec.links):
                i = k - 1 if link.kind == "transform" else None
                slot = runner.slots[i] if runner is not None and i is not None else None
                state = link.kind if i is None else slot.state if slot else "bypassed" if link.bypass else "on"
                rows.append(
                    {
                        "chain": spec.name,
                        "index": i,
                        "link": link,
                        "state": state,
                        "failed": slot.failed if slot else None,
                        "cpu_ms": slot.cpu_s / slot.calls * 1000 if slot and slot.calls else None,
                        "max_ms": slot.max_cpu_s * 1000 if slot and slot.calls else None,
                    }
                )
        return rows

    def chain_bypass(self, chain: str, index: int) -> bool:
        """Bypass transform ``index`` of ``chain``, or take it back (a failed one gets another try)."""
        link = self._spec(chain).links[index + 1]
        runner = self._runner(chain)
        failed = runner is not None and runner.slots[index].failed is not None
        on = not link.bypass and not failed
        if runner is not None:
            runner.set_bypass(index, on)
        link.bypass = on
        self.log(f"chain {chain}: {link.name} {'bypassed' if on else 'on'}")
        return on

    def chain_move(self, chain: str, index: int, delta: int) -> int:
        """Move transform ``index`` earlier (-1) or later (+1); returns its new index."""
        spec = self._spec(chain)
        runner = self._runner(chain)
        if runner is not None:
            j = runner.move(index, delta)
        else:
            j = min(max(index + delta, 0), len(spec.transforms) - 1)
            spec.links[index + 1], spec.links[j + 1] = spec.links[j + 1], spec.links[index + 1]
        if j != index:
            self.log(f"chain {chain}: {spec.links[j + 1].name} moved to place {j + 1}")
        return j

    def chain_set(self, chain: str, index: int, name: str, text: str) -> None:
        """Change a parameter, checked against its declaration (raises ParamError)."""
        from melody_lc.chain.api import ParamError
        from melody_lc.chain.constrain import Constrain
        from melody_lc.chain.runner import make_processor

        link = self._spec(chain).links[index + 1]
        runner = self._runner(chain)
        if runner is not None:
            runner.set_param(index, name, text)
        else:
            old = (dict(link.values), dict(link.written))
            link.set(name, text)
            if link.cls is not Constrain:  # its rules, model and fit are loaded when it plays
                try:
                    make_processor(link)
                except Exception as e:  # noqa: BLE001 - the plugin refused these values
                    link.values, link.written = old
                    raise ParamError(f"{link.name}: {e}") from None
        self.log(f"chain {chain}: {link.name} {name} = {link.written[name]}")

    def chain_save(self) -> Path:
        """Write the chains, as they are now, back to their file (other lines kept)."""
        self.chains.save()
        self.log(f"saved the chains to {self.chains.path}")
        return self.chains.path
