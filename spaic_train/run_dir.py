"""The run directory of ``python train.py``: one run at a time (:class:`RunDirLock`), which earlier run
``trainer.resume=last`` continues (:func:`latest_run_dir`) and the command that continues one
(:func:`resume_command`).

Light on purpose (no torch, no Lightning): :mod:`spaic_train.cli` uses it before Hydra composes anything.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from .config import ConfigError

__all__ = ["LOCK_NAME", "RunDirLock", "latest_run_dir", "launcher_rank", "lock_holder", "resume_command"]

log = logging.getLogger("spaic_train.cli")

#: the lock file inside a run directory while a run writes there: ``"<pid> <host>"``
LOCK_NAME = ".lock"


def launcher_rank() -> int:
    """This process's global rank as the launcher set it (the variables Lightning reads: ``RANK``,
    ``LOCAL_RANK``, ``SLURM_PROCID``), 0 when none is set.  Only rank 0 locks and checks the run directory: the
    other processes of a DDP run are started into the same directory on purpose."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_holder(run_dir: str | os.PathLike) -> Optional[str]:
    """``"pid N on host H"`` of the live run holding ``run_dir``'s lock, else ``None`` (no lock, or a stale one
    left by a killed process of this machine)."""
    try:
        pid_text, host = (Path(run_dir) / LOCK_NAME).read_text().split()[:2]
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if host == socket.gethostname() and not _alive(pid):
        return None
    return f"pid {pid} on host {host}"


def _in_use(run_dir: Path, holder: str) -> ConfigError:
    return ConfigError(f"run directory {run_dir} is in use by another run ({holder}); two runs in one directory "
                       f"would mix their logs, checkpoints and metrics. Wait for it to finish, or give this run "
                       f"another hydra.run.dir (delete {run_dir / LOCK_NAME} only if that run is gone)")


class RunDirLock:
    """``with RunDirLock(run_dir):`` — the run owns ``run_dir`` until the block ends.

    The lock is the file ``<run_dir>/.lock`` (created exclusively) holding this process's pid and host.  A lock
    whose process no longer runs (this machine; a killed run) is taken over with a warning; a live one stops this
    run with a :class:`~spaic_train.config.ConfigError` naming its pid.

    Raises:
        ConfigError: another live run holds the directory.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self._mine = f"{os.getpid()} {socket.gethostname()}\n"

    def __enter__(self) -> RunDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = lock_holder(self.path.parent)
                if holder is not None:
                    raise _in_use(self.path.parent, holder) from None
                stale = self.path.read_text().strip() if self.path.exists() else "?"
                log.warning(f"{self.path.parent}: taking over the lock of a run that is gone (pid {stale})")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self._mine)
            return self
        raise _in_use(self.path.parent, lock_holder(self.path.parent) or "unknown")

    def __exit__(self, *exc) -> None:
        try:
            if self.path.read_text() == self._mine:
                self.path.unlink()
        except OSError:
            pass


def latest_run_dir(runs: str | os.PathLike) -> Optional[Path]:
    """The run directory under ``runs`` (``outputs/<recipe>``) whose ``checkpoints/last.ckpt`` was written last,
    or ``None``."""
    found = [(p.stat().st_mtime, p.parent.parent) for p in Path(runs).glob("*/checkpoints/last.ckpt")]
    return max(found)[1] if found else None


def resume_command(argv0: str, overrides: Sequence[str], run_dir: str | Path) -> str:
    """The shell command that continues the run in ``run_dir``: the same program and overrides, plus
    ``hydra.run.dir=<run_dir> trainer.resume=last`` (replacing any given before)."""
    name = Path(argv0).name
    program = ["spaic-train"] if name == "spaic-train" else ["python", argv0 if name.endswith(".py") else "train.py"]
    kept = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.run.dir=", "trainer.resume="))]
    return shlex.join([*program, *kept, f"hydra.run.dir={run_dir}", "trainer.resume=last"])
