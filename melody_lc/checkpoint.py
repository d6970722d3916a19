"""One way to save and load any trained part: safetensors weights + a JSON config, written atomically.

A checkpoint is a directory::

    config.json          {"kind": ..., "config": {...}, "meta": {...}}  -- enough to rebuild the part
    weights.safetensors  the model's tensors (optionally fp16 for shipping)
    state.safetensors    training state tensors (optimizer moments, RNG states), when training
    state.json           training state scalars (step, learning rate schedule, data position...)

A checkpoint is written whole into a temporary sibling directory, then swapped into place, so a
process killed at any moment leaves either the previous checkpoint or the new one, never a mix
(if it dies between the two renames of the swap, :func:`load` finds the previous one as
``.<name>.old``). Other files a user keeps in the directory (an evaluation, notes) are carried
into each new version; a directory that exists and holds anything but a checkpoint is never
replaced (:func:`check_target`). Loading never unpickles.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from melody_lc.errors import UserError
from melody_lc.fileio import atomic_path, make_temp_dir, replace_dir, write_json


class CheckpointError(UserError):
    """A checkpoint directory that is missing, incomplete or of another kind."""


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
    """Write a safetensors file atomically; floating tensors are cast to ``dtype`` when given."""
    out = {}
    for k, v in tensors.items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous()
    with atomic_path(path) as tmp:
        save_file(out, str(tmp))


OWN_FILES = ("config.json", "weights.safetensors", "state.json", "state.safetensors")


def check_target(directory: str | os.PathLike, kind: str | None = None, training: bool = True) -> None:
    """Refuse to save into ``directory`` when it exists and is not a checkpoint (nor empty), holds a
    checkpoint of another ``kind``, or holds a training run (``training=False``: an export must not
    replace the run it came from). Saving replaces the directory; that must never take a user's
    other files, or other work, with it."""
    d = resolve(directory)
    if not d.exists():
        return
    if not d.is_dir():
        raise CheckpointError(f"{d}: is a file, not a checkpoint directory; choose another directory")
    if not (d / "config.json").is_file():
        if any(d.iterdir()):
            raise CheckpointError(
                f"{d}: exists and is not a checkpoint; choose a new or empty directory "
                "(a checkpoint replaces its directory)"
            )
        return
    try:
        held = json.loads((d / "config.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        raise CheckpointError(f"{d / 'config.json'}: unreadable; choose another directory") from None
    if kind is not None and held != kind:
        raise CheckpointError(f"{d}: holds a {held!r} checkpoint, not a {kind!r}; choose another directory")
    if not training and (d / "state.json").is_file():
        raise CheckpointError(f"{d}: holds a training run; choose another directory")


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _carry_over(old: Path, new: Path) -> None:
    """Link (or copy) into ``new`` what the user keeps in ``old`` beside the checkpoint's own files."""
    for entry in old.iterdir():
        target = new / entry.name
        if entry.name in OWN_FILES or target.exists() or entry.name.endswith(".tmp"):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(target))


def save(
    directory: str | os.PathLike,
    kind: str,
    config: dict,
    weights: dict[str, torch.Tensor],
    meta: dict | None = None,
    state: dict | None = None,
    state_tensors: dict[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Save a checkpoint directory (see the module docstring); ``extra_files`` maps names to text
    (a model card, say) written alongside. Returns the directory's path."""
    d = Path(directory)
    if d.is_symlink():  # the link stays; the folder it names is replaced
        d = d.resolve()
    check_target(d, kind)
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(d)
    try:
        save_tensors(tmp / "weights.safetensors", weights, dtype)
        if state_tensors is not None:
            save_tensors(tmp / "state.safetensors", state_tensors)
        if state is not None:
            write_json(tmp / "state.json", state)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        write_json(tmp / "config.json", {"kind": kind, "config": config, "meta": meta or {}})
        previous = resolve(d)  # after a swap cut short, the previous version is the ".old" one
        if previous.is_dir():
            _carry_over(previous, tmp)
        replace_dir(tmp, d)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return d


def resolve(directory: str | os.PathLike) -> Path:
    """The folder that holds the checkpoint: a symlink followed, and after a swap cut short (killed
    between its two renames) the previous version, ``.<name>.old``."""
    d = Path(directory)
    if d.is_symlink():
        d = d.resolve()
    old = d.with_name(f".{d.name}.old")
    if not d.exists() and old.is_dir():
        return old
    return d


def exists(directory: str | os.PathLike) -> bool:
    """True if a checkpoint can be loaded from ``directory``."""
    return (resolve(directory) / "config.json").is_file()


def load(directory: str | os.PathLike, kind: str | None = None, with_state: bool = False, tensors: bool = True) -> dict:
    """Read a checkpoint: ``{"config", "meta", "weights"[, "state", "state_tensors"]}``; weights in float32.
    ``tensors=False`` reads the JSON parts only (weights and state tensors come back empty)."""
    d = resolve(directory)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{d}: not a checkpoint (no config.json)")
    try:
        head = json.loads(cfg_path.read_text())
    except ValueError as e:
        raise CheckpointError(f"{cfg_path}: damaged ({e})") from None
    if kind is not None and head.get("kind") != kind:
        raise CheckpointError(f"{d}: holds a {head.get('kind')!r}, expected a {kind!r}")
    try:
        weights = (
            {
                k: (v.float() if v.is_floating_point() else v)
                for k, v in load_file(str(d / "weights.safetensors")).items()
            }
            if tensors
            else {}
        )
    except (OSError, Exception) as e:  # safetensors raises its own error type for damaged files
        raise CheckpointError(f"{d / 'weights.safetensors'}: unreadable ({e})") from None
    result = {"config": head["config"], "meta": head.get("meta", {}), "weights": weights}
    if with_state:
        sp, st = d / "state.json", d / "state.safetensors"
        try:
            result["state"] = json.loads(sp.read_text()) if sp.is_file() else None
            result["state_tensors"] = load_file(str(st)) if tensors and st.is_file() else {}
        except (OSError, Exception) as e:  # as above: safetensors has its own error type
            raise CheckpointError(f"{d}: damaged training state ({e})") from None
        if result["state"] is not None and not isinstance(result["state"], dict):
            raise CheckpointError(f"{sp}: damaged (not a JSON object)")
    return result


MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # Adam's per-weight state (its "step" stays exact)


def compact(out: str | os.PathLike, kind: str) -> tuple[int, int]:
    """Rewrite a training checkpoint to be committed: Adam's moments in bf16 (the weights, the step,
    the data position and every RNG stay exact), about two thirds of the size. A run resumed from
    it continues closely but not bit for bit; its next checkpoint is exact again. Returns the
    checkpoint's size in bytes before and after."""
    ck = load(out, kind, with_state=True)
    if ck["state"] is None:
        raise CheckpointError(f"{out}: has no training state to compact")
    d = resolve(out)
    before = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
    tensors = {
        k: v.to(torch.bfloat16) if k.startswith("opt.") and k.rsplit(".", 1)[-1] in MOMENTS else v
        for k, v in ck["state_tensors"].items()
    }
    log = d / "log.jsonl"
    save(
        out,
        kind,
        ck["config"],
        ck["weights"],
        meta=ck["meta"],
        state={**ck["state"], "moments": "bf16"},
        state_tensors=tensors,
        extra_files={"log.jsonl": log.read_text()} if log.exists() else None,
    )
    d = resolve(out)
    return before, sum(f.stat().st_size for f in d.iterdir() if f.is_file())
