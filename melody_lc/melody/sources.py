"""Where melodies come from: MIDI files (parsed with symusic) and music21's bundled corpus.

Both end as :class:`~melody_lc.melody.piece.Piece` objects, so one extraction pipeline serves both.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melody_lc.melody.errors import BadMidiFileError, MelodyError
from melody_lc.melody.piece import MAJOR, MINOR, PIECE_NOTE_DTYPE, Piece, key_from_sharps

MIDI_SUFFIXES = (".mid", ".midi", ".kar")
# music21's monophonic folk collections, and Bach's chorales (soprano line).
FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk")
DEFAULT_COLLECTIONS = FOLK_COLLECTIONS + ("bach",)


class SkipTune(MelodyError):
    """A tune that parses but is not a melody source (e.g. a Bach file that is not a chorale)."""


# --------------------------------------------------------------------------------------------------
# MIDI files
# --------------------------------------------------------------------------------------------------
def read_midi_file(path: str | os.PathLike) -> Piece:
    """Parse a MIDI file into a Piece; raise :class:`BadMidiFileError` with a short reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadMidiFileError(f"cannot read file: {e.strerror or e}") from None
    return parse_midi_bytes(data)


# symusic's messages for broken files, as a composer would want to read them
_SYMUSIC_ERRORS = (
    (
        re.compile(r"chunk length|remaining bytes|unexpected end|out of range", re.I),
        lambda m: "truncated MIDI file (data ends inside a track)",
    ),
    (re.compile(r"running status", re.I), lambda m: "unreadable MIDI (running status without a status byte)"),
    (re.compile(r"Get (\w+)=(\d+)"), lambda m: f"unreadable MIDI (data byte over 127: {m[1]} {m[2]})"),
)


# Tracks with these names are accompaniment, left out of the melody as drums are: melody-lc's own
# chord track (a rules file's chords), and a DAW's track so named.
ACCOMPANIMENT_TRACKS = ("chords",)


def _accompaniment(name: str) -> bool:
    return name.strip().lower() in ACCOMPANIMENT_TRACKS


def parse_midi_bytes(data: bytes) -> Piece:
    """A Piece from the bytes of a MIDI file (see :func:`read_midi_file`): one instrument per
    symusic track (a MIDI track's notes on one channel), times in quarter notes (ticks / ticks per
    quarter), drums marked."""
    if not data:
        raise BadMidiFileError("empty file")
    if data[:4] != b"MThd":
        raise BadMidiFileError("not a MIDI file (no MThd header)")
    if len(data) >= 10 and int.from_bytes(data[8:10], "big") == 2:
        raise BadMidiFileError("type 2 MIDI (sequential patterns) is not supported")
    import symusic

    try:
        score = symusic.Score.from_midi(data)
    except Exception as e:  # symusic raises RuntimeError / ValueError with its own wording
        text = _first_line(e).removeprefix("MiniMidi: ")
        for pattern, say in _SYMUSIC_ERRORS:
            if m := pattern.search(text):
                raise BadMidiFileError(say(m)) from None
        raise BadMidiFileError(f"unreadable MIDI ({text})") from None
    if score.ticks_per_quarter <= 0:
        raise BadMidiFileError("unreadable MIDI (SMPTE time division is not supported)")
    tpq = float(score.ticks_per_quarter)
    parts = []
    for i, track in enumerate(score.tracks):
        cols = track.notes.numpy()
        sounding = cols["duration"] > 0  # a note-off at its own note-on's tick is no note (as pretty_midi)
        part = np.zeros(int(sounding.sum()), dtype=PIECE_NOTE_DTYPE)
        part["pitch"] = cols["pitch"][sounding]
        part["start"] = cols["time"][sounding] / tpq
        part["end"] = (cols["time"] + cols["duration"])[sounding] / tpq
        part["instrument"], part["is_drum"] = i, track.is_drum or _accompaniment(track.name)
        if _overlapping_repeats(part):
            return _piece_from_pretty_midi(data)
        parts.append(part)
    notes = np.concatenate(parts) if parts else np.zeros(0, dtype=PIECE_NOTE_DTYPE)
    sigs = [(ts.time / tpq, ts.numerator, ts.denominator) for ts in score.time_signatures]
    keys = [(ks.time / tpq, *key_from_sharps(ks.key, ks.tonality == 1)) for ks in score.key_signatures]
    return Piece(notes, sigs, keys)


def _overlapping_repeats(part: np.ndarray) -> bool:
    """Whether a part has two overlapping notes of one pitch (a second note-on before the first's
    note-off). Readers disagree on those: pretty_midi (and most DAWs) end every sounding note of the
    pitch at the next note-off; symusic pairs note-ons and note-offs first in, first out and drops a
    note-on left without a note-off."""
    order = np.lexsort((part["start"], part["pitch"]))
    p, start, end = part["pitch"][order], part["start"][order], part["end"][order]
    return bool(((p[1:] == p[:-1]) & (start[1:] < end[:-1])).any())


def _piece_from_pretty_midi(data: bytes) -> Piece:
    """A Piece read by pretty_midi (slower than symusic), for files with overlapping notes of one
    pitch, so that they give the windows they always gave."""
    import io
    import warnings

    import pretty_midi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pretty_midi warns about odd but readable files
        pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    quarter = np.vectorize(lambda t: pm.time_to_tick(t) / pm.resolution, otypes=[np.float64])
    notes = [
        (n.pitch, n.start, n.end, i, inst.is_drum or _accompaniment(inst.name))
        for i, inst in enumerate(pm.instruments)
        for n in inst.notes
    ]
    pitch, start, end, inst, drum = zip(*notes) if notes else ((), (), (), (), ())
    return Piece.from_notes(
        list(pitch),
        quarter(list(start)) if notes else [],
        quarter(list(end)) if notes else [],
        list(inst),
        list(drum),
        time_signatures=[(quarter(ts.time), ts.numerator, ts.denominator) for ts in pm.time_signature_changes],
        keys=[
            (quarter(k.time), k.key_number % 12, MINOR if k.key_number >= 12 else MAJOR)
            for k in pm.key_signature_changes
        ],
    )


def list_midi_files(directory: str | os.PathLike) -> list[Path]:
    """Every MIDI file under ``directory`` (recursively), sorted so that builds are reproducible."""
    root = Path(directory)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        found.extend(p for f in filenames if f.lower().endswith(MIDI_SUFFIXES) and (p := Path(dirpath, f)).is_file())
    return sorted(found)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else "no detail"


# --------------------------------------------------------------------------------------------------
# music21 corpus
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusTune:
    """One parse job: a corpus file, or one tune (ABC reference number) of a multi-tune file."""

    path: str
    collection: str
    number: int | None = None

    @property
    def name(self) -> str:
        rel = self.path.split("/corpus/", 1)[-1] if "/corpus/" in self.path else self.path
        return f"music21:{rel}" + (f"#{self.number}" if self.number is not None else "")


def corpus_tunes(collections=DEFAULT_COLLECTIONS) -> list[CorpusTune]:
    """The parse jobs for the chosen music21 collections, in a stable order.

    Multi-tune ABC files are split by reference number (``X:``) so that the work spreads evenly
    over worker processes (one essenFolksong file holds hundreds of tunes).
    """
    from music21 import corpus

    unknown = set(collections) - set(available_collections())
    if unknown:
        raise MelodyError(f"unknown music21 collection(s): {', '.join(sorted(unknown))}")
    jobs = []
    for p in sorted(corpus.getPaths(), key=str):
        coll = _collection_of(p)
        if coll not in collections:
            continue
        if coll == "bach" and (p.suffix != ".mxl" or "choraleAnalyses" in p.parts):
            continue  # the chorales as scores; .krn copies and roman-numeral analyses are left out
        if p.suffix == ".abc":
            numbers = re.findall(r"^X:\s*(\d+)", p.read_text(encoding="latin-1"), re.M)
            if len(numbers) > 1 and len(set(numbers)) == len(numbers):
                jobs.extend(CorpusTune(str(p), coll, int(n)) for n in numbers)
                continue
        jobs.append(CorpusTune(str(p), coll))
    return jobs


def available_collections() -> list[str]:
    from music21 import corpus

    return sorted({_collection_of(p) for p in corpus.getPaths()})


def _collection_of(path: Path) -> str:
    parts = path.parts
    return parts[parts.index("corpus") + 1] if "corpus" in parts else path.parent.name


def parse_corpus_tune(job: CorpusTune, expand_repeats: bool = True) -> list[tuple[str, object]]:
    """``[(name, Piece)]`` for a corpus job (several when a file holds several tunes).

    Repeats are expanded (the tune as played); Bach chorales give their soprano (first) part.
    music21 is told not to write its parse cache (``forceSource``), so no scratch files are left.
    """
    from music21 import converter, stream

    kwargs = {"forceSource": True}
    if job.number is not None:
        kwargs["number"] = job.number
    parsed = converter.parse(job.path, **kwargs)
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    out = []
    for i, score in enumerate(scores):
        name = job.name if len(scores) == 1 else f"{job.name}#{i}"
        parts = list(score.parts) if hasattr(score, "parts") else []
        if job.collection == "bach":
            line = _chorale_soprano(parts)
        else:
            line = parts[0] if parts else score
        out.append((name, stream_to_piece(line, expand_repeats)))
    return out


VOICES = ("soprano", "alto", "tenor", "bass")


def _chorale_soprano(parts):
    """The soprano of a four-voice chorale; instrumental parts (horns, trumpets...) may come first."""
    names = [str(p.partName or p.id or "").strip().lower() for p in parts]
    voices = [i for i, n in enumerate(names) if n.startswith(VOICES)]
    if len(voices) >= 4:
        soprano = [i for i in voices if names[i].startswith("soprano")]
        return parts[soprano[0] if soprano else voices[0]]
    if len(parts) == 4 and not voices:  # unnamed parts: the usual S, A, T, B order
        return parts[0]
    raise SkipTune(f"not a four-part chorale ({len(parts)} parts)")


def stream_to_piece(line, expand_repeats: bool = True) -> Piece:
    """A music21 part (one melodic line) as a Piece.

    Repeats are expanded when asked and music21 can; a pickup bar is padded so that bar lines fall on
    whole bars; tied notes are merged; grace notes and chord symbols are left out; of a chord the
    top note is kept.
    """
    from music21 import harmony, key, meter

    if expand_repeats:
        try:
            line = line.expandRepeats()
        except Exception:  # malformed repeat marks: keep the tune as written
            pass
    line.stripTies(inPlace=True)  # the parsed part is ours alone: no need for music21's deep copy
    measures = line.getElementsByClass("Measure")
    pad = float(measures[0].paddingLeft) if len(measures) else 0.0
    flat = line.flatten()

    # Time signatures from the bars that carry them (music21 may share one TimeSignature object
    # between bars, so offsets in the flattened stream are not reliable).
    carriers = [(m.offset, m.timeSignature) for m in measures if m.timeSignature is not None]
    if not carriers:
        carriers = [(ts.offset, ts) for ts in flat.getElementsByClass(meter.TimeSignature)]
    sigs = [
        (0.0 if float(offset) <= 0 else float(offset) + pad, ts.numerator, ts.denominator) for offset, ts in carriers
    ]
    first = next(iter(flat.getElementsByClass(key.Key)), None)
    keys = [(0.0, first.tonic.pitchClass, first.mode)] if first is not None and first.mode in (MAJOR, MINOR) else []
    pitch, start, end = [], [], []
    for el in flat.notes:
        if isinstance(el, harmony.Harmony) or el.duration.quarterLength == 0:
            continue
        pitch.append(max(p.midi for p in el.pitches))
        start.append(float(el.offset) + pad)
        end.append(start[-1] + float(el.duration.quarterLength))
    return Piece.from_notes(pitch, start, end, time_signatures=sigs, keys=keys)
