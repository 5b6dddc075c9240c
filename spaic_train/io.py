"""File IO that every part of spaic_train shares: crash-safe writes and safe, checked loading.

* :func:`atomic_write_bytes` / :func:`atomic_torch_save`: the bytes go to a temporary file in the destination
  directory, are flushed and ``fsync``-ed, then moved over the destination with ``os.replace`` (atomic on POSIX
  and Windows), and the directory entry is ``fsync``-ed.  A process killed during a save leaves the previous
  file intact (at worst a stray ``.tmp`` file).  Saved models (``model.save``), NIR exports and training
  checkpoints (:class:`~spaic_train.training.checkpoint.AtomicCheckpointIO`) are all written this way.
* :func:`load_checkpoint_safely`: files are always read with ``torch.load(weights_only=True)``, so no arbitrary
  object is ever unpickled.  A truncated or corrupted file, or one whose pickle asks for a non-allowlisted
  global (e.g. ``os.system``), raises :class:`CheckpointError` naming the file and the problem.

This module depends on torch and the standard library only, so that every layer (``keras``, ``nir``,
``training``) can use it.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "atomic_torch_save", "atomic_write_bytes", "default_cache_dir", "load_checkpoint_safely"]


def default_cache_dir() -> Path:
    """Where spaic_train keeps what it derives once per machine (decoded datasets, event frames, built
    kernels): ``$SPAIC_TRAIN_CACHE`` if set, else ``~/.cache/spaic_train``."""
    env = os.environ.get("SPAIC_TRAIN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spaic_train"


class CheckpointError(ValueError):
    """A checkpoint file is missing parts, truncated, corrupted, or not safe to load."""


# ------------------------------------------------------------------------------------------------ saving
def _fsync_dir(dirpath: str) -> None:
    try:
        fd = os.open(dirpath, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: Any) -> None:
    """``torch.save(obj, path)`` that never leaves a partially written ``path`` (see :func:`atomic_write_bytes`)."""
    buf = io.BytesIO()
    torch.save(obj, buf)  # serialise first: a pickling error must not touch the destination
    atomic_write_bytes(buf.getbuffer(), path)


def atomic_write_bytes(data, path: Any) -> None:
    """Write ``data`` (bytes-like) to ``path`` without ever leaving a partially written ``path``.

    The bytes go to ``<dir>/.<name>.<random>.tmp`` (same filesystem), are flushed and fsync-ed, then
    ``os.replace`` swaps the file in; the directory is fsync-ed so the rename itself is durable.
    """
    path = os.fspath(path)
    dirpath = os.path.dirname(os.path.abspath(path))
    os.makedirs(dirpath, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=dirpath)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(dirpath)


# ------------------------------------------------------------------------------------------------ loading


def _head(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(4)


#: how every file written by ``torch.save`` begins: a zip archive, or a pickle (protocol >= 2) in the legacy format
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")

_RESUME_REMEDY = "delete it or resume from another checkpoint"


def load_checkpoint_safely(path: Any, map_location: Any = "cpu", kind: str = "checkpoint",
                           remedy: str = _RESUME_REMEDY) -> Any:
    """``torch.load(path, weights_only=True)`` with one clear error per way the file can be wrong.

    Args:
        path: the file.
        map_location: passed to ``torch.load``.
        kind: what the file should be, for the messages (``"checkpoint"``, ``"model file"``).
        remedy: what the user can do about a broken file, ending the messages.

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a directory (the message lists the ``.pt`` / ``.ckpt`` files in it).
        CheckpointError: not a PyTorch file (e.g. a text file), an empty, truncated or corrupted file
            (``"truncated or corrupt"``), or a pickle that needs globals outside torch's ``weights_only``
            allowlist (``"unsafe"``: refused, nothing is executed).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith((".pt", ".pth", ".ckpt")))
        hint = f"; it holds {', '.join(found[:5])}" + (" ..." if len(found) > 5 else "") if found else ""
        raise IsADirectoryError(f"{kind} {path!r} is a directory, not a file{hint}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{kind} {path!r} does not exist")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{kind} {path!r} is truncated or corrupt: the file is empty (0 bytes); {remedy}")
    head = _head(path)
    if not head.startswith(_TORCH_MAGIC):
        raise CheckpointError(f"{kind} {path!r} is not a PyTorch file: it starts with {head!r}, where torch.save "
                              f"writes a zip archive or a pickle (a text file, another format, or corrupt?); {remedy}")
    if head == _TORCH_MAGIC[0]:
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise CheckpointError(f"{kind} {path!r} is truncated or corrupt ({size} bytes, not a complete zip "
                                  f"archive: {e}); {remedy}") from None
        if bad is not None:
            raise CheckpointError(f"{kind} {path!r} is truncated or corrupt: member {bad!r} fails its CRC "
                                  f"check; {remedy}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        unsafe = [ln.strip() for ln in msg.splitlines()
                  if "Unsupported global" in ln or "GLOBAL" in ln or "Unsupported class" in ln]
        if unsafe:
            first = unsafe[0]
            raise CheckpointError(
                f"{kind} {path!r} is unsafe to load: its pickle refers to objects outside the weights_only "
                f"allowlist ({first or 'non-tensor globals'}); refused without executing it. Load only files "
                "you trust; for trusted files with custom objects register them with "
                "torch.serialization.add_safe_globals") from None
        detail = next((ln.strip() for ln in msg.splitlines() if ln.strip().startswith("Unsupported")
                       or "error" in ln.lower() and "WeightsUnpickler" not in ln), "")
        raise CheckpointError(f"{kind} {path!r} is truncated or corrupt ({size} bytes; unpickling failed"
                              f"{': ' + detail if detail else ''}); {remedy}") from None
    except Exception as e:  # a damaged legacy pickle fails in many ways (EOFError, KeyError, RuntimeError, ...)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{kind} {path!r} is truncated or corrupt ({size} bytes; torch.load failed: "
                              f"{type(e).__name__}: {first}); {remedy}") from None
