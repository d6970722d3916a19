"""The names a user chooses from, and the defaults ``--help`` states, one home each. Light to
import: the command line offers them (and ``--help`` lists them) before torch is loaded; the modules
that act on them import them here."""

METHODS = ("actor", "gd", "reject")  # constrained generation: the actor, gradient search, rejection sampling
CLOCKS = ("internal", "send", "follow")  # a stream keeps its own time, also sends MIDI clock, or follows a DAW's
PRECISIONS = ("auto", "bf16", "fp32")  # auto: bf16 where it is fast and works (CUDA, AMX, AVX-512 BF16)
AUDIO_FORMATS = ("wav", "flac")  # what `render` and --audio write (the first: the default)
REALISM_STEPS = 2000  # critic and actor steps of a realism fit (what it gives: benchmarks/realism_overlap.py)
