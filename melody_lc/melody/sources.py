"""Where melodies come from: MIDI files (parsed with note_seq) and music21's bundled corpus.

Both end as note_seq ``NoteSequence`` objects, so one extraction pipeline serves both.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from melody_lc.melody.errors import BadMidiFileError, MelodyError

MIDI_SUFFIXES = (".mid", ".midi", ".kar")
# music21's monophonic folk collections, and Bach's chorales (soprano line).
FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk")
DEFAULT_COLLECTIONS = FOLK_COLLECTIONS + ("bach",)
CORPUS_QPM = 120.0  # corpus tunes carry no tempo that matters; quarters become 0.5 s


class SkipTune(MelodyError):
    """A tune that parses but is not a melody source (e.g. a Bach file that is not a chorale)."""


# --------------------------------------------------------------------------------------------------
# MIDI files
# --------------------------------------------------------------------------------------------------
def read_midi_file(path: str | os.PathLike):
    """Parse a MIDI file into a NoteSequence; raise :class:`BadMidiFileError` with a short reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadMidiFileError(f"cannot read file: {e.strerror or e}") from None
    return parse_midi_bytes(data)


def parse_midi_bytes(data: bytes):
    """NoteSequence from the bytes of a MIDI file (see :func:`read_midi_file`)."""
    if not data:
        raise BadMidiFileError("empty file")
    if data[:4] != b"MThd":
        raise BadMidiFileError("not a MIDI file (no MThd header)")
    if len(data) >= 10 and int.from_bytes(data[8:10], "big") == 2:
        raise BadMidiFileError("type 2 MIDI (sequential patterns) is not supported")
    import pretty_midi
    from note_seq import midi_io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pretty_midi warns about odd but readable files
        try:
            pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
        except EOFError:
            raise BadMidiFileError("truncated MIDI file (data ends inside a track)") from None
        except Exception as e:  # mido/pretty_midi raise many types for broken files
            raise BadMidiFileError(f"unreadable MIDI ({type(e).__name__}: {_first_line(e)})") from None
        try:
            return midi_io.midi_to_note_sequence(pm)
        except midi_io.MIDIConversionError as e:
            raise BadMidiFileError(f"unreadable MIDI ({_first_line(e)})") from None


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
    """``[(name, NoteSequence)]`` for a corpus job (several when a file holds several tunes).

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
        out.append((name, stream_to_note_sequence(line, expand_repeats)))
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


def stream_to_note_sequence(line, expand_repeats: bool = True):
    """A music21 part (one melodic line) as a NoteSequence at 120 qpm.

    Repeats are expanded when asked and music21 can; a pickup bar is padded so that bar lines fall on
    whole bars; tied notes are merged; grace notes and chord symbols are left out; of a chord the
    top note is kept.
    """
    from music21 import harmony, key, meter
    from note_seq.protobuf import music_pb2

    if expand_repeats:
        try:
            line = line.expandRepeats()
        except Exception:  # malformed repeat marks: keep the tune as written
            pass
    line.stripTies(inPlace=True)  # the parsed part is ours alone: no need for music21's deep copy
    measures = line.getElementsByClass("Measure")
    pad = float(measures[0].paddingLeft) if len(measures) else 0.0
    flat = line.flatten()
    sec = 60.0 / CORPUS_QPM

    seq = music_pb2.NoteSequence()
    seq.ticks_per_quarter = 220
    seq.tempos.add(time=0.0, qpm=CORPUS_QPM)
    # Time signatures from the bars that carry them (music21 may share one TimeSignature object
    # between bars, so offsets in the flattened stream are not reliable).
    carriers = [(m.offset, m.timeSignature) for m in measures if m.timeSignature is not None]
    if not carriers:
        carriers = [(ts.offset, ts) for ts in flat.getElementsByClass(meter.TimeSignature)]
    for offset, ts in carriers:
        t = 0.0 if float(offset) <= 0 else (float(offset) + pad) * sec
        seq.time_signatures.add(time=t, numerator=ts.numerator, denominator=ts.denominator)
    for k in flat.getElementsByClass(key.Key):
        if k.mode in ("major", "minor"):
            seq.key_signatures.add(time=0.0, key=k.tonic.pitchClass, mode=0 if k.mode == "major" else 1)
        break
    end = 0.0
    for el in flat.notes:
        if isinstance(el, harmony.Harmony) or el.duration.quarterLength == 0:
            continue
        midi = max(p.midi for p in el.pitches)
        start = (float(el.offset) + pad) * sec
        stop = start + float(el.duration.quarterLength) * sec
        seq.notes.add(pitch=midi, velocity=80, start_time=start, end_time=stop, instrument=0)
        end = max(end, stop)
    seq.total_time = end
    return seq
