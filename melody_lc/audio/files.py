"""Audio files: WAV (16-bit, the standard library's ``wave``) and FLAC (through soundfile, where it
is installed), written atomically."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from melody_lc.audio.soundfonts import AudioError
from melody_lc.fileio import atomic_path

FORMATS = ("wav", "flac")


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """(samples, channels) float in -1..1 to ``path``; the format from its extension."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise AudioError(f"{path}: expected a .wav or .flac file name")
    pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767).round().astype("<i2")
    if pcm.ndim == 1:
        pcm = pcm[:, None]
    if fmt == "flac":
        try:
            import soundfile
        except ImportError:
            raise AudioError(
                f"{path}: FLAC needs the soundfile package (`pip install soundfile`); WAV needs nothing"
            ) from None
    with atomic_path(path) as tmp:
        if fmt == "wav":
            with wave.open(str(tmp), "wb") as w:
                w.setnchannels(pcm.shape[1])
                w.setsampwidth(2)
                w.setframerate(sample_rate)
                w.writeframes(pcm.tobytes())
        else:
            soundfile.write(str(tmp), pcm, sample_rate, format="FLAC", subtype="PCM_16")
    return path


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A WAV file melody-lc wrote: ((samples, channels) float32, sample rate); FLAC through soundfile."""
    path = Path(path)
    if path.suffix.lower() == ".flac":
        import soundfile

        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
        return data, sr
    with wave.open(str(path), "rb") as w:
        n, ch, sr = w.getnframes(), w.getnchannels(), w.getframerate()
        pcm = np.frombuffer(w.readframes(n), "<i2").reshape(n, ch)
    return pcm.astype(np.float32) / 32767, sr
