"""Sound fonts: where melody-lc finds a General MIDI one, and the check that a file is one.
(No heavy imports: the CLI's help texts read these names.)"""

from __future__ import annotations

import os
from pathlib import Path

from melody_lc.errors import UserError

# Where a GM sound font is looked for by name (``--soundfont FluidR3_GM``): Debian's and Ubuntu's
# sound font packages install here (fluid-soundfont-gm, timgm6mb-soundfont, musescore-general-soundfont).
SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts")


class AudioError(UserError):
    """An audio problem a user can fix: no FluidSynth library, a missing or broken sound font, no output."""


def default_soundfont() -> Path:
    """The small GM sound font (TimGM6mb, 6 MB) that pretty_midi ships inside its wheel: always
    installed with melody-lc, so a fresh install sounds with nothing downloaded."""
    import pretty_midi

    return Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"


def find_soundfont(name: str | os.PathLike | None) -> Path:
    """A sound font by path, or by name in :data:`SOUNDFONT_DIRS` (with or without its extension);
    None: :func:`default_soundfont`. Checked to be a SoundFont 2/3 file (a RIFF 'sfbk')."""
    if name is None or str(name) == "":
        path = default_soundfont()
    else:
        path = Path(name).expanduser()
        if not path.exists() and not path.parent.name and path.suffix.lower() not in (".sf2", ".sf3"):
            found = [Path(d) / f"{name}{ext}" for d in SOUNDFONT_DIRS for ext in (".sf2", ".sf3")]
            path = next((p for p in found if p.exists()), path)
    if not path.is_file():
        known = sorted({p.stem for d in SOUNDFONT_DIRS if os.path.isdir(d) for p in Path(d).glob("*.sf[23]")})
        hint = f" (by name here: {', '.join(known)})" if known else ""
        raise AudioError(f"{path}: no such sound font file{hint}")
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as e:
        raise AudioError(f"{path}: cannot read the sound font: {e.strerror or e}") from None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise AudioError(f"{path}: not a SoundFont (expected an .sf2 or .sf3 file, a RIFF 'sfbk')")
    return path
