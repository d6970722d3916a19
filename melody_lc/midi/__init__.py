"""MIDI out of melody-lc: ports (mido + python-rtmidi), the tempo scheduler and the live engine."""
