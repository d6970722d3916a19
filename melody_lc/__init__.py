"""melody-lc: steer an unconditional melody VAE with rules (Latent Constraints, Engel et al. 2018).

Importing the package is cheap: heavy libraries (torch, symusic, music21, rtmidi, textual) are
imported by the modules that need them, never here.
"""

__version__ = "0.1.0"

import warnings as _warnings

# note_seq (the note-seq extra) imports pydub, which warns at import time that ffmpeg is missing; melody-lc never uses
# pydub's audio, so that one message is silenced.
_warnings.filterwarnings("ignore", message="Couldn't find ffmpeg or avconv", category=RuntimeWarning)
