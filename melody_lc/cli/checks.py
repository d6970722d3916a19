"""Option values checked when the command line is read, before anything is loaded or generated.

Each is an argparse ``type``: a bad value is the usual one-line argparse error with exit code 2,
and a command never runs for minutes only to fail when it writes its output.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path


def temperature(text: str) -> float:
    """A decoding temperature: a number >= 0 (0: the most likely class at every step)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _can_write_in(folder: Path, path: Path) -> None:
    """A file can be made in ``folder`` (tried: permission bits do not tell, for root or /proc)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{path}: cannot write in {folder} ({e.strerror})") from None


def _writable_below(path: Path) -> None:
    """``path`` does not exist: its nearest existing parent must be a folder one can write in."""
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: {parent} is a file, not a folder")
    _can_write_in(parent, path)


def _checked(check):
    """A check that says a file system's refusal (a folder one may not look into) as its answer."""

    def run(text: str) -> str:
        try:
            return check(text)
        except OSError as e:
            raise argparse.ArgumentTypeError(f"{text}: {e.strerror}") from None

    run.__name__ = check.__name__  # argparse names the type in its messages
    return run


@_checked
def out_folder(text: str) -> str:
    """A folder to write into: an existing writable folder, or one that can be made (it is made
    when the command writes)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a folder, got an empty name")
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{path}: is a file, not a folder")
        _can_write_in(path, path)
    else:
        _writable_below(path)
    return str(path)


@_checked
def out_file(text: str) -> str:
    """A file to write (replaced if it exists), in a folder that exists or can be made."""
    if not text:
        raise argparse.ArgumentTypeError("expected a file name, got an empty one")
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: is a folder; expected a file name")
    if path.exists():
        _can_write_in(path.absolute().parent, path)
    else:
        _writable_below(path)
    return str(path)
