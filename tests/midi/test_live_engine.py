"""The live engine in-process, on the real clock, with a tiny model: what plays, and changes on the fly."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from melody_lc.melody.model import PRESETS, HierarchicalMelodyVAE
from melody_lc.midi.live import LiveConfig, LiveEngine
from melody_lc.midi.maker import PhraseMaker
from melody_lc.midi.schedule import Phrase
from melody_lc.rules import parse_rules


class Collect:
    def __init__(self):
        self.got, self.lock = [], threading.Lock()

    def send(self, msg):
        with self.lock:
            self.got.append((time.monotonic(), msg))


def _engine(rules, values=None, phrases=3, bpm=900.0):
    torch.manual_seed(0)
    model = HierarchicalMelodyVAE(PRESETS["tiny"]).eval()
    maker = PhraseMaker(model, rules, None, values=values, seed=3)
    out = Collect()
    return LiveEngine(maker, out, LiveConfig(bpm=bpm, phrases=phrases)), out


def test_phrases_follow_each_other_and_a_change_applies_from_the_next_phrase():
    rules = parse_rules("key: ? major")
    engine, out = _engine(rules, values={"tonic": 0})
    engine.start()
    while len(engine.played) < 1:
        time.sleep(0.01)
    engine.maker.update(values={"tonic": 7})  # while phrase 0 plays: phrase 1 is made again
    engine.changed()
    assert engine.done.wait(60)
    engine.stop()
    assert [r.index for r in engine.played] == [0, 1, 2]
    assert engine.played[0].info["values"] == {"tonic": 0.0}
    assert [r.info["values"] for r in engine.played[1:]] == [{"tonic": 7.0}] * 2
    assert engine.transport.late_phrases == 0 and all(r.margin > 0 for r in engine.played)
    # what was sent is exactly the played phrases, back to back
    sent = [(m.type, m.note) for _, m in out.got if m.type in ("note_on", "note_off")]
    want = []
    for r in engine.played:
        ev = Phrase.from_tokens(r.tokens).events
        want += [(m.type, m.note) for s in sorted(ev) for m in ev[s]]
    assert sent == want
    # and it ended with panic
    assert [(m.type, m.control) for _, m in out.got[-2:]] == [("control_change", 123), ("control_change", 120)]


def test_successive_phrases_are_related_not_random():
    rules = parse_rules("density: <= 16 notes per bar")
    engine, _ = _engine(rules, phrases=1)
    maker = engine.maker
    zs = []
    for _ in range(6):
        maker.next()
        zs.append(maker.z.clone())
    steps = [float((b - a).norm()) for a, b in zip(zs, zs[1:])]
    Z = maker.z.shape[-1]
    jump = (2 * Z) ** 0.5  # the typical distance between two independent prior draws
    assert np.mean(steps) < 0.6 * jump  # a walk, not fresh draws (0.35 * sqrt(2 Z) expected)
    assert all(abs(float(z.norm()) - Z**0.5) < 0.5 * Z**0.5 for z in zs)  # and it stays where the prior lives
