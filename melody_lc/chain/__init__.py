"""The MIDI plugin host: chains of MIDI processors between sources and outputs.

Writing a processor (built in or a plugin): ``api.py``. Built-in transforms: ``builtin.py``.
The chain file: ``syntax.py``. Finding processors and plugins: ``registry.py``. Running chains
on a tempo, with isolation: ``host.py``.
"""

from melody_lc.chain.api import (
    API_VERSION,
    PLUGIN_GROUP,
    Context,
    Duration,
    Event,
    NoteMap,
    Param,
    ParamError,
    Processor,
)
from melody_lc.chain.spec import ChainError, ChainFile
from melody_lc.chain.syntax import load_chains, parse_chains

__all__ = [
    "API_VERSION",
    "PLUGIN_GROUP",
    "ChainError",
    "ChainFile",
    "Context",
    "Duration",
    "Event",
    "NoteMap",
    "Param",
    "ParamError",
    "Processor",
    "load_chains",
    "parse_chains",
]
