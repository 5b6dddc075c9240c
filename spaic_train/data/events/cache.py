"""A frame cache that cannot go stale: count frames written once to disk, under a key that hashes everything
they depend on.

Key (sha256 of a JSON document, :func:`cache_key`): the cache format version, the dataset and partition name,
the whole :class:`~.frames.FrameSpec` (bins, bin width, mode, polarity, downsampling, denoising, channel groups,
origin), the ordered list of sample ids, and the identity of every file read — path relative to ``data.root``,
size in bytes and modification time in ns.  Change any of them (a bin count, a re-downloaded file) and a new
directory is made; an existing one is only ever read.  What is applied after the cache (``clamp``, augmentation,
the train/validation carve) is not in the key, so it reuses the cache without making it wrong.

Layout of ``<cache_dir>/<dataset>-<partition>-<key[:16]>/``: ``meta.json`` (key document, sample ids, labels,
skipped files, frame shape), ``offsets.npy`` (``int64 [N+1]``), ``index.npy`` (``int32`` flat indices of the
non-zero counts of all samples, concatenated) and ``counts.npy`` (``uint16``, saturating at 65535).  Event frames
are sparse: N-MNIST's 35 × 2 × 34 × 34 frames hold ~3 % non-zeros, so this is ~6 bytes per non-zero count instead
of 4 bytes per cell.  The directory is built under a temporary name and renamed into place (atomic on one file
system): a crash leaves no half-written cache, and two processes building the same key keep the first complete one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .formats import CorruptEventFileError
from .frames import FrameSpec

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
COUNT_MAX = np.iinfo(np.uint16).max


def file_identity(paths: Sequence[Path], root: Path) -> list[list]:
    """``[[path relative to root, size, mtime_ns], ...]`` of the distinct ``paths``, sorted."""
    out = []
    for p in sorted(set(paths)):
        st = p.stat()
        out.append([relative(p, root), st.st_size, st.st_mtime_ns])
    return out


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form (absolute if outside it), for keys that match across clones."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def human_size(n: int) -> str:
    """``1234567`` → ``'1.2 MB'`` (decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def cache_key(dataset: str, partition: str, spec: FrameSpec, sample_ids: Sequence[str], files: list) -> str:
    """sha256 (hex) of everything the cached frames depend on (module docstring)."""
    doc = {"format": CACHE_FORMAT, "dataset": dataset, "partition": partition, "spec": spec.as_dict(),
           "samples": list(sample_ids), "files": files}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class FrameCache:
    """Read side of one cache directory: ``frames(i)`` → ``float32 [T, *frame_shape]`` of the ``i``-th kept
    sample (memory-mapped, so worker processes share the page cache)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.meta = json.loads((self.directory / "meta.json").read_text())
        self.shape = tuple(self.meta["shape"])
        self.offsets = np.load(self.directory / "offsets.npy")
        self.index = np.load(self.directory / "index.npy", mmap_mode="r")
        self.counts = np.load(self.directory / "counts.npy", mmap_mode="r")
        self.kept: list[int] = self.meta["kept"]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def frames(self, i: int) -> np.ndarray:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        out = np.zeros(int(np.prod(self.shape)), dtype=np.float32)
        out[self.index[a:b]] = self.counts[a:b]
        return out.reshape(self.shape)

    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.directory.iterdir())


def open_or_build(cache_dir: str | os.PathLike, dataset: str, partition: str, spec: FrameSpec,
                  sample_ids: Sequence[str], files: list, produce: Callable[[int], np.ndarray]) -> FrameCache:
    """The cache of ``(dataset, partition, spec, samples, files)``: opened if it exists, else built by calling
    ``produce(i)`` for every sample (``[T, *frame_shape]`` counts).

    A sample whose file cannot be decoded (:class:`~.formats.CorruptEventFileError`) is left out; one warning
    names and counts them (repeated whenever the cache is opened).  ``FrameCache.kept`` lists the positions kept.
    """
    key = cache_key(dataset, partition, spec, sample_ids, files)
    final = Path(cache_dir).expanduser() / f"{dataset}-{partition}-{key[:16]}"
    if not (final / "meta.json").is_file():
        _build(final, key, spec, sample_ids, produce)
    cache = FrameCache(final)
    skipped = cache.meta["skipped"]
    if skipped:
        warnings.warn(f"{dataset} {partition}: skipped {len(skipped)} of {len(sample_ids)} recordings that cannot "
                      f"be decoded: " + "; ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""), stacklevel=2)
    return cache


def _build(final: Path, key: str, spec: FrameSpec, sample_ids: Sequence[str],
           produce: Callable[[int], np.ndarray]) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=final.parent))
    try:
        offsets, kept, skipped, saturated = [0], [], [], 0
        shape = (spec.time_steps, *spec.frame_shape)
        with open(tmp / "index.raw", "wb") as fi, open(tmp / "counts.raw", "wb") as fc:
            for i in range(len(sample_ids)):
                try:
                    frames = produce(i)
                except CorruptEventFileError as e:
                    skipped.append(str(e))
                    continue
                flat = frames.reshape(-1)
                nz = np.flatnonzero(flat)
                saturated += int((flat[nz] > COUNT_MAX).sum())
                nz.astype(np.int32).tofile(fi)
                np.minimum(flat[nz], COUNT_MAX).astype(np.uint16).tofile(fc)
                offsets.append(offsets[-1] + len(nz))
                kept.append(i)
        np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64))
        np.save(tmp / "index.npy", np.fromfile(tmp / "index.raw", dtype=np.int32))
        np.save(tmp / "counts.npy", np.fromfile(tmp / "counts.raw", dtype=np.uint16))
        (tmp / "index.raw").unlink()
        (tmp / "counts.raw").unlink()
        meta = {"key": key, "spec": spec.as_dict(), "shape": list(shape), "samples": list(sample_ids),
                "kept": kept, "skipped": skipped, "saturated_counts": saturated}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same key first: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
            return
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(f.stat().st_size for f in final.iterdir())
    log.info(f"event frame cache: wrote {len(kept)} samples x {list(shape)} ({human_size(size)}) to {final}")
    if saturated:
        log.warning(f"event frame cache {final}: {saturated} counts above {COUNT_MAX} per frame cell were clipped")
