"""The host at run time: processors in order, live changes, and isolation: a processor that
raises, overruns its budget or never returns is bypassed, the stream goes on, and no note hangs."""

from __future__ import annotations

import threading
import time

import mido
import pytest

from melody_lc.chain.api import Param, Processor
from melody_lc.chain.registry import Entry, registry
from melody_lc.chain.runner import ChainRunner, Sink, Slot, make_processor
from melody_lc.chain.syntax import parse_chains, resolve
from melody_lc.midi.schedule import Tempo, quiet_gc
from tests.chain.conftest import hanging, stream

FAST_BPM = 960.0  # a sixteenth every 15.6 ms


class Recorder:
    """An output port that keeps what it was sent, with the time."""

    name = "recorder"

    def __init__(self) -> None:
        self.got: list[tuple[float, mido.Message]] = []

    def send(self, msg) -> None:
        self.got.append((time.monotonic(), msg))

    def notes(self):
        return [(t, m) for t, m in self.got if m.type in ("note_on", "note_off")]


class Raiser(Processor):
    name = "raiser"
    params = (Param("after", "int", 10, min=0),)

    def process(self, events, ctx):
        if any(e.is_note for e in events):
            self.values["after"] -= 1
            if self.values["after"] < 0:
                raise RuntimeError("the plugin broke")
        return [e.with_msg(note=e.msg.note + 1) if e.is_note else e for e in events]


class Hog(Processor):
    name = "hog"
    params = (Param("after", "int", 10, min=0),)

    def process(self, events, ctx):
        if any(e.is_note for e in events):
            self.values["after"] -= 1
            if self.values["after"] < 0:
                t = time.thread_time()
                while time.thread_time() - t < 0.03:  # 30 ms of CPU, budget 5 ms
                    pass
        return events


class Hanger(Processor):
    name = "hanger"
    params = (Param("after", "int", 10, min=0),)

    def process(self, events, ctx):
        if any(e.is_note for e in events):
            self.values["after"] -= 1
            if self.values["after"] < 0:
                time.sleep(30)  # never comes back (as far as the stream can wait)
        return events


class Closer(Processor):
    name = "closer"
    closed = 0

    def close(self):
        self.closed += 1
        raise RuntimeError("cannot close")


TABLE = {**registry()[0], **{c.name: Entry(c, "test") for c in (Raiser, Hog, Hanger, Closer)}}


def runner(text: str, bpm: float = FAST_BPM, log=None):
    spec = resolve(parse_chains(text, "t.chain"), TABLE).chains[0]
    port = Recorder()
    slots = [Slot(make_processor(link), link) for link in spec.transforms]
    r = ChainRunner(spec, slots, Sink(port), Tempo(bpm, time.monotonic()), log=log)
    return r, port


def play(r: ChainRunner, events, until: float | None = None) -> None:
    """Feed ``events`` (times from 0) in real time, from another thread as a source would; the
    collector leaves what is loaded alone while it plays, as the rack has it (quiet_gc)."""
    quiet_gc()
    t0 = time.monotonic()
    r.tempo.t_anchor = t0
    r.start()

    def feed():
        for e in events:
            if until is not None and e.time > until:
                break
            left = t0 + e.time - time.monotonic()
            if left > 0:
                time.sleep(left)
            r.feed([e.msg])

    th = threading.Thread(target=feed)
    th.start()
    th.join()
    time.sleep(0.1)
    quiet_gc(False)


def test_processors_run_in_order_on_a_real_stream(phrases):
    events = stream(phrases[:1], bpm=FAST_BPM)
    r, port = runner("chain: input() -> transpose(12) -> scale(D, dorian) -> channel(to=3) -> out()")
    play(r, events)
    r.stop()
    sent = [m for _, m in port.notes()]
    want = [e.msg for e in events]
    assert len([m for m in sent if m.type == "note_on"]) == len([m for m in want if m.type == "note_on" and m.velocity])
    from melody_lc.melody.pitches import MODES

    assert all(m.channel == 2 and (m.note - 2) % 12 in MODES["dorian"] for m in sent)
    assert not hanging(sent)
    lat = [t for t, _ in port.got]
    assert lat, "nothing was sent"


@pytest.mark.parametrize(
    "culprit, says",
    [
        ("raiser", "raised RuntimeError: the plugin broke"),
        ("hog", "over its 5 ms budget"),
        ("hanger", "did not return within 250 ms"),
    ],
)
def test_a_failing_processor_is_bypassed_and_the_stream_goes_on(phrases, culprit, says):
    log = []
    events = stream(phrases[:1], bpm=FAST_BPM)
    r, port = runner(
        f"chain: input() -> transpose(12) -> {culprit}(after=10) -> velocity(fixed=77) -> out()", log=log.append
    )
    play(r, events)
    r.stop()
    slot = r.slots[1]
    assert slot.failed and says in slot.failed and any(says in line and culprit in line for line in log)
    assert r.slots[0].active and r.slots[2].active  # the others keep working
    ons_in = [e.msg for e in events if e.is_note_on]
    ons_out = [m for _, m in port.notes() if m.type == "note_on" and m.velocity]
    assert len(ons_out) >= len(ons_in) - 1  # the stream went on (a hung call's own note may come late or not)
    assert all(m.velocity == 77 for m in ons_out)
    late = ons_out[-10:]  # after the failure the notes pass the culprit unchanged: transposed, not +1
    assert [m.note for m in late] == [m.note + 12 for m in ons_in[-10:]]
    assert not hanging([m for _, m in port.got])
    cc = [(m.control, m.channel) for _, m in port.got if m.type == "control_change"]
    assert (123, 0) in cc and (120, 0) in cc


def test_stop_ends_every_note_even_those_still_to_come(phrases):
    events = stream(phrases[:1], bpm=FAST_BPM)
    r, port = runner("chain: input() -> notelength(length=2bars) -> echo(1/2, repeats=4) -> out()")
    play(r, events, until=1.0)
    r.stop()
    got = [m for _, m in port.got]
    assert any(m.type == "note_on" for m in got) and not hanging(got)
    n = len(got)
    time.sleep(0.5)
    assert len(port.got) == n  # nothing more after stop: queued echoes were dropped


def test_bypass_reorder_and_parameters_change_live(phrases):
    events = stream(phrases[:1], bpm=FAST_BPM)
    r, port = runner("chain: input() -> transpose(12) -> scale(C) -> out()")
    t0 = time.monotonic()
    r.tempo.t_anchor = t0
    r.start()
    half = len(events) // 4

    def feed(evs, base):
        for e in evs:
            left = base + e.time - time.monotonic()
            if left > 0:
                time.sleep(left)
            r.feed([e.msg])

    feed(events[:half], t0)
    time.sleep(0.05)
    mark = len(port.got)
    r.set_bypass(0, True)  # transpose off
    r.set_param(1, "key", "F#")
    r.move(1, -1)  # scale first now
    assert [s.link.name for s in r.slots] == ["scale", "transpose"] and r.spec.links[1].name == "scale"
    feed(events[half : 2 * half], t0)
    time.sleep(0.05)
    r.stop()
    after = [m for _, m in port.got[mark:] if m.type == "note_on" and m.velocity]
    before = [m for _, m in port.got[:mark] if m.type == "note_on" and m.velocity]
    from melody_lc.melody.pitches import MODES

    assert after and all((m.note - 6) % 12 in MODES["major"] for m in after)  # F# major, untransposed
    assert all(m.note % 12 in MODES["major"] for m in before)
    assert not hanging([m for _, m in port.got])
    assert r.spec.text() == "chain: input() -> scale(key=F#) -> transpose(semitones=12, bypass=yes) -> out()"


def _feed_at(r: ChainRunner, t0: float, at: float, msg) -> None:
    left = t0 + at - time.monotonic()
    if left > 0:
        time.sleep(left)
    r.feed([msg])


def test_a_change_mid_note_leaves_no_note_hanging():
    """A note-on humanize holds for later, then humanize is bypassed before the note-off comes."""
    r, port = runner("chain: input() -> humanize(timing=100ms, velocity=0) -> out()")
    t0 = time.monotonic()
    r.start()
    _feed_at(r, t0, 0.0, mido.Message("note_on", note=60, velocity=90))
    time.sleep(0.02)
    r.set_bypass(0, True)
    _feed_at(r, t0, 0.05, mido.Message("note_off", note=60))
    time.sleep(0.4)
    assert not hanging([m for _, m in port.got]) and not r.sink.sounding
    r.stop()


def test_echoed_notes_through_a_pitch_change_end_in_order():
    """Echoes of a held note overlap the note; each echo's note-off ends that echo's pitch."""
    r, port = runner("chain: input() -> echo(1/16, repeats=2) -> transpose(12) -> out()", bpm=120)
    t0 = time.monotonic()
    r.start()
    _feed_at(r, t0, 0.0, mido.Message("note_on", note=60, velocity=90))
    _feed_at(r, t0, 0.2, mido.Message("note_off", note=60))
    time.sleep(0.6)
    r.stop()
    notes = [m for _, m in port.notes()]
    assert [(m.type, m.note) for m in notes if m.type == "note_on"] == [("note_on", 72)] * 3
    assert [m.note for m in notes if m.type == "note_off"] == [72, 72, 72]
    assert not r.sink.sounding


class Liar(Processor):
    name = "liar"
    params = (Param("how", "choice", "nan", choices=("nan", "msg", "lookahead")),)

    def lookahead(self, bpm):
        if self.values["how"] == "lookahead":
            raise ValueError("no idea")
        return 0.0

    def process(self, events, ctx):
        if self.values["how"] == "nan":
            return [e.at(float("nan")) for e in events]
        if self.values["how"] == "msg":
            return [type(e)(e.time, "note_on 60") for e in events]
        return events


TABLE["liar"] = Entry(Liar, "test")


@pytest.mark.parametrize(
    "how, says",
    [
        ("nan", "an event at time nan"),
        ("msg", "str where an Event"),
        ("lookahead", "raised ValueError in lookahead(): no idea"),
    ],
)
def test_a_processor_that_returns_nonsense_is_bypassed(phrases, how, says):
    events = stream(phrases[:1], bpm=FAST_BPM)
    r, port = runner(f"chain: input() -> liar({how}) -> out()")
    play(r, events, until=1.0)
    r.stop()
    assert r.slots[0].failed and says in r.slots[0].failed
    ons = [m for _, m in port.notes() if m.type == "note_on" and m.velocity]
    assert len(ons) == len([e for e in events if e.is_note_on and e.time <= 1.0])  # all passed through
    assert not hanging([m for _, m in port.got])


def test_the_tempo_given_wins_over_the_files(tmp_path):
    from melody_lc.chain.host import Rack
    from melody_lc.chain.syntax import load_chains

    (tmp_path / "t.chain").write_text("tempo: 100\nchain: file(x.mid) -> record(out.mid)\n")
    track = mido.MidiTrack([mido.Message("note_on", note=60, velocity=90), mido.Message("note_off", note=60, time=480)])
    mido.MidiFile(tracks=[track]).save(tmp_path / "x.mid")
    rack = Rack(load_chains(tmp_path / "t.chain"), bpm=150)
    assert rack.tempo.bpm == 150


class Slow(Processor):
    """Spends wall time (not CPU) on note-ons or note-offs, as a plugin waiting on a lock would."""

    name = "slow"
    params = (Param("on", "float", 0.0, min=0), Param("off", "float", 0.0, min=0))

    def process(self, events, ctx):
        for e in events:
            if e.is_note_on and self.values["on"]:
                time.sleep(self.values["on"])
            if e.is_note_off and self.values["off"]:
                time.sleep(self.values["off"])
        return events


class Stuck(Processor):
    """Hangs in process while holding its lock; its reset takes the same lock."""

    name = "stuck"
    params = ()

    def __init__(self, **values):
        super().__init__(**values)
        self.lock = threading.Lock()
        self.seen = 0

    def process(self, events, ctx):
        self.seen += sum(e.is_note_on for e in events)
        if self.seen >= 2:
            with self.lock:
                time.sleep(30)
        return events

    def reset(self):
        with self.lock:
            pass


TABLE["slow"] = Entry(Slow, "test")
TABLE["stuck"] = Entry(Stuck, "test")


def test_a_change_while_a_call_runs_voids_what_that_call_made():
    r, port = runner("chain: input() -> transpose(12) -> slow(on=0.03) -> out()")
    t0 = time.monotonic()
    r.start()
    _feed_at(r, t0, 0.0, mido.Message("note_on", note=60, velocity=90))
    time.sleep(0.01)
    r.set_bypass(0, True)  # while slow() still works on the transposed note-on
    _feed_at(r, t0, 0.1, mido.Message("note_off", note=60))
    time.sleep(0.2)
    assert not r.sink.sounding and not hanging([m for _, m in port.got])
    r.stop()


def test_a_hung_processor_whose_reset_blocks_does_not_silence_the_chain():
    log = []
    r, port = runner("chain: input() -> stuck() -> out()", log=log.append)
    t0 = time.monotonic()
    r.start()
    for k, note in enumerate([60, 61, 62, 63]):
        _feed_at(r, t0, 0.4 * k, mido.Message("note_on", note=note, velocity=90))
        _feed_at(r, t0, 0.4 * k + 0.1, mido.Message("note_off", note=note))
    time.sleep(0.3)
    r.stop()
    ons = [m.note for _, m in port.notes() if m.type == "note_on" and m.velocity]
    assert ons == [60, 61, 62, 63] and any("did not return" in line for line in log)
    assert not hanging([m for _, m in port.got])


def test_closing_a_chain_closes_each_processor_once_and_a_failing_close_is_only_logged():
    said = []
    r, _ = runner("chain: input() -> closer() -> transpose(2) -> closer() -> out()", log=said.append)
    r.close()
    assert [getattr(s.proc, "closed", None) for s in r.slots] == [1, None, 1]
    assert len(said) == 2 and all("close raised RuntimeError: cannot close" in s for s in said)


def test_what_was_queued_first_goes_out_first():
    """A short note whose note-on waits in the heap while a slow call makes its note-off."""
    for seed in range(4):
        r, port = runner(f"chain: input() -> humanize(timing=30ms, velocity=0, seed={seed}) -> slow(off=0.04) -> out()")
        t0 = time.monotonic()
        r.start()
        _feed_at(r, t0, 0.0, mido.Message("note_on", note=60, velocity=90))
        _feed_at(r, t0, 0.005, mido.Message("note_off", note=60))
        time.sleep(0.2)
        r.stop()
        kinds = [m.type for _, m in port.notes()]
        assert kinds[:2] == ["note_on", "note_off"], (seed, kinds)
        assert not hanging([m for _, m in port.got])


def test_the_watchdog_counts_a_call_only_while_it_was_awake_to_see_it():
    """A process starved of CPU or of the GIL starves the processor too: that is no hang. The
    watchdog's looks are made here by hand, so that a loaded machine cannot change what it sees."""
    from melody_lc.chain.runner import WATCH_S

    r, _ = runner("chain: input() -> transpose(2) -> out()")
    with r.lock:  # a call that began 5 s ago, the watchdog not having run since
        r.running, r._next_tick = True, r.clock.now()
        r._busy = (r._gen, r.slots[0], [], [], time.monotonic() - 5.0)
    try:
        r.watch()
        assert r.slots[0].failed is None and r._watched[1] == pytest.approx(2 * WATCH_S)
        looks = 1
        while r.slots[0].failed is None and looks < 200:
            time.sleep(WATCH_S)
            r.watch()
            looks += 1
        # a call seen stuck for 250 ms is still bypassed: after 7 looks at the least (40 ms each at most)
        assert "did not return within 250 ms" in (r.slots[0].failed or "") and looks >= 7
    finally:
        r.stop()


def test_a_garbage_collection_is_not_charged_to_the_processor_it_interrupts():
    """The budget counts a processor's own CPU: a collection's pause (which runs in whatever thread
    happens to allocate) is timed apart, in the thread it ran in."""
    import gc
    import threading

    from melody_lc.chain.runner import gc_thread_time

    heap = [[i, [i]] for i in range(300_000)]  # containers for the collector to walk
    t0, g0 = time.thread_time(), gc_thread_time()
    gc.collect()
    spent, in_gc = time.thread_time() - t0, gc_thread_time() - g0
    assert spent > 0.002 and 0.8 * spent <= in_gc <= spent
    other = []
    t = threading.Thread(target=lambda: (gc.collect(), other.append(gc_thread_time())))
    t.start()
    t.join()
    assert other[0] > 0 and gc_thread_time() - g0 == in_gc  # another thread's collection is its own
    del heap
