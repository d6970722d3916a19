"""Sound without a DAW: the built-in General MIDI synth (FluidSynth) that renders melodies to WAV or
FLAC, plays them to the machine's audio output, and stands in for a MIDI port wherever melody-lc
plays live (``SynthPort``).

    soundfonts.py  which sound font (the one pretty_midi ships, Debian's, or a path), checked
    synth.py       ``Synth``: FluidSynth offline (``render_midi``) or on an audio driver (``start``)
    files.py       WAV and FLAC, written atomically
    port.py        ``SynthPort`` and ``Tee``: the synth as a MIDI output port
    capture.py     ``JackCapture``: what reached JACK audio inputs, for the tests and benchmarks

Room: above midi (it reads MIDI messages and files, and asks midi.ports whether JACK runs), below
chain, tui and cli, which use it as a sink.
"""
