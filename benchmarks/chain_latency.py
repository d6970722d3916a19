"""Latency the MIDI plugin host adds: per built-in processor, and for a chain of five, beside the
live engine's own timing figures measured in the same run.

    python benchmarks/chain_latency.py [--bpm 960] [--phrases 1]

Each configuration streams the shipped model's phrases (rules/c_major_busy.rules, its shipped fit)
through ``generator -> [processors] -> record``, on the real host (a thread per chain). Printed:
  - the live engine's send error: when it handed each sixteenth's messages over, minus the deadline
    (the figure of benchmarks/live_timing.py, without a chain);
  - the chain's latency: from a message's arrival at the chain to the moment its processed events
    that are due at once were sent (events a processor delays on purpose, such as echoes, are not
    latency); median and p99 over every batch, and the median added to the empty chain's;
  - each processor's CPU time per call, as the host measured it.
No MIDI system is needed: the sink records (``record(...)``); a port's own send time adds the same
to every row.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

ALONE = [
    "transpose(7)",
    "scale(D, dorian)",
    "quantize(1/16, 50)",
    "humanize(timing=0ms, velocity=10)",
    "velocity(curve=1.5)",
    "notelength(max=1/16)",
    "channel(to=2)",
    "echo(1/8, repeats=2)",
]
FIVE = "transpose(7) -> scale(D, dorian) -> humanize(timing=0ms, velocity=10) -> velocity(curve=1.5) -> echo(1/8)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bpm", type=float, default=960.0, help="tempo (960: a 16-bar phrase in 4 s)")
    ap.add_argument("--phrases", type=int, default=1, help="phrases per configuration")
    ap.add_argument("--rules", default=str(REPO / "rules" / "c_major_busy.rules"))
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))

    from melody_lc.chain.host import Rack
    from melody_lc.chain.syntax import load_chains
    from melody_lc.cli.constrain import _prepare

    ns = argparse.Namespace(rules=args.rules, model=None, data=None, quiet=True, rounds=None, quick=False)
    prepared = _prepare(ns)
    seconds = args.phrases * 256 * 60 / args.bpm / 4
    tmp = Path(tempfile.mkdtemp())

    def run(procs: str) -> dict:
        path = tmp / "bench.chain"
        middle = f" -> {procs}" if procs else ""
        path.write_text(f"chain: generator(rules={args.rules}){middle} -> record(out.mid)\n")
        rack = Rack(load_chains(path), lambda _: prepared, bpm=args.bpm)
        runner = rack.runners[0]
        runner.latencies = []
        rack.start()
        time.sleep(seconds + 0.2)
        rack.stop()
        engine = rack.sources[runner.name].engine
        assert not any(s.failed for s in runner.slots), [s.failed for s in runner.slots]
        return {
            "chain": np.array(runner.latencies),
            "send": np.array(engine.step_lateness),
            "cpu": [(s.link.name, s.cpu_s / max(1, s.calls)) for s in runner.slots],
        }

    def ms(x, q):
        return np.percentile(x, q) * 1e3

    print(f"{args.phrases} phrase(s) at {args.bpm:g} bpm per row; times in ms; CPU per call in microseconds")
    empty = run("")
    print(f"live engine send error (no chain): median {ms(empty['send'], 50):.3f}, p99 {ms(empty['send'], 99):.3f}")
    base = ms(empty["chain"], 50)
    print(f"\n{'processors':<58} {'median':>7} {'p99':>7} {'added':>7}  CPU/call")
    print(f"{'(none: the host alone)':<58} {base:7.3f} {ms(empty['chain'], 99):7.3f} {0:7.3f}")
    for procs in ALONE + [FIVE]:
        r = run(procs)
        label = procs if procs != FIVE else f"five: {procs}"
        cpu = ", ".join(f"{n} {c * 1e6:.0f}" for n, c in r["cpu"])
        print(
            f"{label[:58]:<58} {ms(r['chain'], 50):7.3f} {ms(r['chain'], 99):7.3f} {ms(r['chain'], 50) - base:7.3f}  {cpu}"
        )
        if procs == FIVE:
            print(
                f"  live engine send error with the chain of five: median {ms(r['send'], 50):.3f}, "
                f"p99 {ms(r['send'], 99):.3f}"
            )


if __name__ == "__main__":
    main()
