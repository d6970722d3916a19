"""Atomic file writing: a temp file beside the target, then ``os.replace``.

An interrupted write (Ctrl-C, a crash, a full disk) leaves the old file, or none, never half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success rename it onto ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 (and some writers recreate the file)
        os.replace(tmp, target)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if e.filename is None:  # a full disk says no file: name the one being written
            raise OSError(e.errno, e.strerror, str(target)) from e
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_temp_dir(beside: Path) -> Path:
    """A new temporary directory next to ``beside`` with the usual permissions (mkdtemp makes 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{beside.name}.", suffix=".tmp", dir=beside.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1) + "\n")


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished directory ``src`` onto ``dst``, replacing an older one.

    The older one is first renamed to ``.<name>.old``: if the process dies between the two renames,
    the previous version is still there under that name (readers may fall back to it).
    """
    old = dst.with_name(f".{dst.name}.old")
    if dst.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)
