"""melody-lc's built-in synthesizer: FluidSynth (through pyfluidsynth) with a General MIDI sound font.

    synth = Synth()                      # the default sound font (audio/soundfonts.py)
    audio = synth.render_midi(midi)      # (samples, 2) float32 in -1..1, offline, sample-exact
    synth.start()                        # or: to the machine's audio output, in real time
    synth.send(mido.Message("note_on", note=60, velocity=90))

FluidSynth is a system library (Debian and Ubuntu: ``apt-get install libfluidsynth3``; macOS:
``brew install fluid-synth``; Windows: FluidSynth's release, on the PATH); pyfluidsynth finds it.
Without it, or with a sound font that is not one, the error is a :class:`AudioError`: one line for
the user. Audio output goes through FluidSynth's own drivers: JACK when a JACK server runs, otherwise
the platform's default (PulseAudio or ALSA on Linux, CoreAudio on macOS, WASAPI/DirectSound on Windows).
"""

from __future__ import annotations

import os
import sys

import mido
import numpy as np

from melody_lc.audio.soundfonts import AudioError, find_soundfont

SAMPLE_RATE = 44_100  # files; a real-time driver runs at its server's rate
GAIN = 2.5  # FluidSynth's master gain (its default, 0.2, leaves TimGM6mb's melodies near -30 dBFS)
TAIL_S = 1.0  # rendered after the last event, for the notes' release and the reverb
FRAME = 64  # FluidSynth computes 64 samples at a time; events between are applied at the next block
AUDIO_DRIVER_ENV = "MELODY_LC_AUDIO_DRIVER"  # a FluidSynth audio driver by name: jack, pulseaudio, alsa, ...


def _fluidsynth():
    """pyfluidsynth, with FluidSynth's own log silenced (melody-lc reports what goes wrong itself)."""
    try:
        import fluidsynth
    except ImportError:
        raise AudioError(
            "the built-in synth needs the FluidSynth library: on Debian or Ubuntu `apt-get install "
            "libfluidsynth3`, on macOS `brew install fluid-synth`, on Windows FluidSynth's release on the PATH"
        ) from None
    lib = getattr(fluidsynth, "_fl", None)
    if lib is not None and not getattr(fluidsynth, "_melody_lc_quiet", False):
        for level in range(5):  # FLUID_PANIC .. FLUID_DBG: no handler, no output
            lib.fluid_set_log_function(level, None, None)
        fluidsynth._melody_lc_quiet = True
    return fluidsynth


class Synth:
    """One FluidSynth instance with one sound font loaded; every channel starts on GM program 0
    (channel 10 on the drum kit), and MIDI messages change that as a GM synth would."""

    def __init__(self, soundfont: str | os.PathLike | None = None, sample_rate: int = SAMPLE_RATE, gain: float = GAIN):
        fluidsynth = _fluidsynth()
        self.soundfont = find_soundfont(soundfont)
        self.sample_rate = sample_rate
        self._fs = fluidsynth.Synth(gain=gain, samplerate=float(sample_rate))
        self.sfid = self._fs.sfload(str(self.soundfont))
        if self.sfid < 0:
            self._fs.delete()
            raise AudioError(f"{self.soundfont}: FluidSynth cannot load this sound font (a damaged file?)")
        for ch in range(16):
            self._fs.program_select(ch, self.sfid, 128 if ch == 9 else 0, 0)
        self.driver: str | None = None
        self._closed = False

    # ---- MIDI in ----------------------------------------------------------------------------------
    def send(self, msg: mido.Message) -> None:
        """Apply one MIDI channel message (others, clock and meta messages, are ignored)."""
        fs, t = self._fs, msg.type
        if t == "note_on" and msg.velocity > 0:
            fs.noteon(msg.channel, msg.note, msg.velocity)
        elif t in ("note_on", "note_off"):
            fs.noteoff(msg.channel, msg.note)
        elif t == "control_change":
            fs.cc(msg.channel, msg.control, msg.value)
        elif t == "program_change":
            fs.program_select(msg.channel, self.sfid, 128 if msg.channel == 9 else 0, msg.program)
        elif t == "pitchwheel":
            fs.pitch_bend(msg.channel, msg.pitch)

    def all_off(self) -> None:
        """Every note on every channel ends now (its release still sounds)."""
        for ch in range(16):
            self._fs.cc(ch, 123, 0)

    # ---- offline ----------------------------------------------------------------------------------
    def samples(self, n: int) -> np.ndarray:
        """The next ``n`` samples, (n, 2) float32 in -1..1 (not while an audio driver runs)."""
        if n <= 0:
            return np.zeros((0, 2), np.float32)
        return (np.asarray(self._fs.get_samples(n), np.float32).reshape(n, 2) / 32768.0).astype(np.float32)

    def render_midi(self, midi: mido.MidiFile, tail_s: float = TAIL_S) -> np.ndarray:
        """The whole file as audio, (samples, 2) float32: its tempo map, programs and velocities as
        written; each message lands on the FluidSynth block (:data:`FRAME` samples) that holds its time."""
        parts, at, t = [], 0, 0.0
        for msg in midi:  # mido yields every track's messages merged, with delta times in seconds
            t += msg.time
            due = round(t * self.sample_rate)
            if due > at:
                parts.append(self.samples(due - at))
                at = due
            if not msg.is_meta:
                self.send(msg)
        self.all_off()
        parts.append(self.samples(round(tail_s * self.sample_rate)))
        return np.concatenate(parts) if parts else np.zeros((0, 2), np.float32)

    # ---- real time --------------------------------------------------------------------------------
    def start(self, driver: str | None = None, client_name: str = "melody-lc-synth") -> str:
        """Sound through an audio driver in FluidSynth's own thread: ``driver`` by name, else
        $MELODY_LC_AUDIO_DRIVER, else JACK when a server runs, else FluidSynth's default for the
        platform. Returns the driver's name."""
        fluidsynth = _fluidsynth()
        fs = self._fs
        wanted = driver or os.environ.get(AUDIO_DRIVER_ENV, "").strip() or None
        tries = [wanted] if wanted else (["jack"] if _jack_server_running() else []) + [None]
        for name in tries:
            name = name or fs.get_setting("audio.driver")
            fs.setting("audio.driver", name)
            if name == "jack":
                fs.setting("audio.jack.id", client_name)
                fs.setting("audio.jack.autoconnect", 1)  # to the system's playback ports
            fs.audio_driver = fluidsynth.new_fluid_audio_driver(fs.settings, fs.synth)
            if fs.audio_driver:
                self.driver = name
                return name
        raise AudioError(
            f"no audio output: FluidSynth's {' or '.join(t or 'default' for t in tries)} driver did not open"
            + (" (is a sound server running?)" if sys.platform.startswith("linux") else "")
            + f"; choose one with {AUDIO_DRIVER_ENV}=jack|pulseaudio|alsa|..."
        )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._fs.delete()


def _jack_server_running() -> bool:
    """A JACK server is up (without starting one: JACK_NO_START_SERVER)."""
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    from melody_lc.midi.ports import jack_running

    return jack_running()


def read_midi_file(path: str | os.PathLike, need_notes: bool = True) -> mido.MidiFile:
    """A .mid file for rendering or playing, or a one-line :class:`AudioError` (also for a file
    without notes, unless not ``need_notes``: a melody melody-lc wrote may be all rests)."""
    try:
        midi = mido.MidiFile(str(path))
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as e:
        why = str(e) or type(e).__name__  # an EOFError says nothing of itself
        raise AudioError(f"{path}: not a readable MIDI file ({why})") from None
    if need_notes and not any(msg.type == "note_on" and msg.velocity > 0 for track in midi.tracks for msg in track):
        raise AudioError(f"{path}: no notes to play")
    return midi


def music_seconds(midi: mido.MidiFile) -> float:
    """How long the music lasts: to its last note's end (trailing meta events and silence aside)."""
    t = end = 0.0
    for msg in midi:
        t += msg.time
        if msg.type in ("note_on", "note_off"):
            end = t
    return end


def energy_onsets(
    audio: np.ndarray, sample_rate: int, window_s: float = 0.005, look_s: float = 0.030, rise_db: float = 9.0
) -> np.ndarray:
    """Where sounds start, in seconds: the energy of 5 ms windows, a window every millisecond; an
    onset where a window is ``rise_db`` louder than the quietest of the 30 ms before (and above the
    silence 50 dB below the loudest), at most one per 50 ms; its time is the window's start. The
    tests and benchmarks check rendered and received audio against the notes' times with it
    (a percussive GM program, such as 12, marimba, shows every attack; a sustained one, such as the
    piano's, hides legato ones)."""
    mono = np.asarray(audio, np.float64).reshape(len(audio), -1).mean(1)
    hop, width = max(1, round(0.001 * sample_rate)), max(1, round(window_s * sample_rate))
    if len(mono) < width + hop:
        return np.zeros(0)
    cum = np.concatenate([[0.0], np.cumsum(mono**2)])
    ends = np.arange(width, len(mono) + 1, hop)
    db = 10 * np.log10((cum[ends] - cum[ends - width]) / width + 1e-12)
    floor = db.max() - 50.0
    look, refractory = round(look_s * 1000), 50
    onsets, last = [], -refractory
    for i in range(len(db)):
        before = max(db[max(0, i - look) : i].min(), floor) if i else floor  # silence before the start
        if db[i] > floor and db[i] - before >= rise_db and i - last >= refractory:
            onsets.append(max(ends[i] - hop, 0) / sample_rate)  # the attack entered in the window's last ms
            last = i
    return np.asarray(onsets)
