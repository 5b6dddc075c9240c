"""Readers of the on-disk formats of the event datasets' releases, all returning one event layout.

Every reader returns a structured array with fields ``x``, ``y`` (pixel), ``p`` (polarity 0/1) and ``t``
(timestamp in µs), :data:`EVENT_DTYPE`, in file order.  The decoding of the formats tonic implements correctly is
tonic's (``tonic.io``); where a tonic reader mis-reads a release the reason is written next to our code:

==================  ==========================================================================================
format              reader
==================  ==========================================================================================
5-byte ``.bin``      :func:`read_bin` — N-MNIST, N-Caltech101 (Orchard et al. 2015): ``tonic.io.read_mnist_file``
AEDAT 3.1            :func:`read_aedat31` — DVS Gesture (IBM, ``userNN_<lighting>.aedat``): our packet parser
                     (``tonic.io`` reads every packet as polarity events and ignores the timestamp overflow)
AEDAT 2.0 (jAER)     :func:`read_jaer_dvs128` — CIFAR10-DVS original ``.aedat``: ``tonic.io``'s AEDAT 2 event
                     reader (``tonic.io.read_dvs_128`` itself fails in tonic 1.7: it unpacks 2 of 3 header values)
AEDAT 4              :func:`read_aedat4` — tonic's CIFAR10-DVS repack: ``tonic.io.read_aedat4`` (``aedat``)
``.npy`` repack      :func:`read_gesture_npy` — tonic's DVS Gesture repack (``[N, 4]`` x, y, p, t in ms)
HDF5 (SHD/SSC)       :class:`SpikeHDF5` — ``spikes/times`` (s, vlen), ``spikes/units`` (vlen), ``labels``
==================  ==========================================================================================

A file that cannot be decoded raises :class:`CorruptEventFileError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from ..base import MissingExtraError

#: the event layout every reader returns: pixel x/y, polarity p (0 OFF, 1 ON), timestamp t in µs
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])

# type, source, size, ts offset, ts overflow, capacity, number, valid
AEDAT31_PACKET_HEADER = struct.Struct("<hhiiiiii")
AEDAT31_POLARITY_EVENT = 1


class CorruptEventFileError(ValueError):
    """An event file that cannot be decoded (truncated, wrong format); the message names the file."""


def require(module: str, user: str = "reading event datasets"):
    """Import ``module`` (tonic, h5py, aedat) or raise a :class:`~spaic_train.data.MissingExtraError` saying that
    ``user`` needs it and naming the ``events`` extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = module.split(".")[0]
        raise MissingExtraError(f"{user} needs {package!r}, which is not installed ({e}): install the 'events' "
                                f"extra, pip install -e \".[events]\" in a clone of spaic_train (or pip install "
                                f"'spaic_train[events]')") from None


def make_events(x, y, p, t) -> np.ndarray:
    """Structured :data:`EVENT_DTYPE` array from four equally long arrays (``t`` in µs)."""
    ev = np.empty(len(t), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = x, y, np.asarray(p).astype(np.int8), t
    return ev


def read_bin(path: str | os.PathLike) -> np.ndarray:
    """N-MNIST / N-Caltech101 5-byte records (x, y, polarity bit | 23-bit µs timestamp, overflow events
    ``y == 240`` adding 2^13 µs), decoded by ``tonic.io.read_mnist_file``."""
    tio = require("tonic.io")
    size = Path(path).stat().st_size
    if size % 5:
        raise CorruptEventFileError(f"{path}: {size} bytes is not a whole number of 5-byte events (truncated?)")
    raw = tio.read_mnist_file(str(path), dtype=np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64),
                                                       ("p", np.int64)]))
    return make_events(raw["x"], raw["y"], raw["p"], raw["t"])


def _aedat_header_end(f, path) -> float:
    """Skip the ``#`` header lines of an AEDAT 2/3 file; return the version from ``#!AER-DAT<v>``."""
    version = None
    while True:
        pos = f.tell()
        line = f.readline()
        if not line.startswith(b"#"):
            f.seek(pos)
            break
        if line.startswith(b"#!AER-DAT"):
            try:
                version = float(line[9:].strip())
            except ValueError:
                raise CorruptEventFileError(f"{path}: unreadable AEDAT version line {line!r}") from None
        if line.startswith(b"#!END-HEADER"):
            break
    if version is None:
        raise CorruptEventFileError(f"{path}: no '#!AER-DAT<version>' header line: not an AEDAT file")
    return version


def read_aedat31(path: str | os.PathLike) -> np.ndarray:
    """Polarity events of an AEDAT 3.1 file (DVS Gesture's ``userNN_<lighting>.aedat``, cAER/jAER).

    Packets: a 28-byte header (``eventType``, ``eventSource``, ``eventSize``, ``eventTSOffset``,
    ``eventTSOverflow``, ``eventCapacity``, ``eventNumber``, ``eventValid``), then ``eventCapacity·eventSize``
    bytes.  Polarity packets (type 1, 8-byte events: ``uint32`` data with valid bit 0, polarity bit 1, y bits 2–16,
    x bits 17–31; ``int32`` timestamp in µs extended by ``eventTSOverflow << 31``) are decoded, only valid events
    kept; other packet types (special, frame, IMU) are skipped by their declared size.
    """
    with open(path, "rb") as f:
        version = _aedat_header_end(f, path)
        if int(version) != 3:
            raise CorruptEventFileError(f"{path}: AEDAT version {version}, expected 3.1 (DVS Gesture)")
        body = f.read()
    xs, ys, ps, ts = [], [], [], []
    pos, hsize = 0, AEDAT31_PACKET_HEADER.size
    while pos < len(body):
        if len(body) - pos < hsize:
            raise CorruptEventFileError(f"{path}: truncated packet header at byte {pos} of the data")
        etype, _, esize, _, overflow, capacity, _, _ = AEDAT31_PACKET_HEADER.unpack_from(body, pos)
        pos += hsize
        nbytes = capacity * esize
        if esize <= 0 or capacity < 0 or pos + nbytes > len(body):
            raise CorruptEventFileError(f"{path}: packet at byte {pos - hsize} declares {capacity} events of "
                                        f"{esize} bytes, {len(body) - pos} bytes left (truncated?)")
        if etype == AEDAT31_POLARITY_EVENT:
            rec = np.frombuffer(body, dtype=np.dtype([("data", "<u4"), ("ts", "<i4")]), count=capacity, offset=pos) \
                if esize == 8 else None
            if rec is None:
                raise CorruptEventFileError(f"{path}: polarity events of {esize} bytes, expected 8")
            data = rec["data"]
            valid = (data & 1).astype(bool)
            data = data[valid]
            xs.append((data >> 17) & 0x7FFF)
            ys.append((data >> 2) & 0x7FFF)
            ps.append((data >> 1) & 1)
            ts.append(rec["ts"][valid].astype(np.int64) | (np.int64(overflow) << 31))
        pos += nbytes
    if not ts:
        return np.empty(0, dtype=EVENT_DTYPE)
    return make_events(np.concatenate(xs), np.concatenate(ys), np.concatenate(ps), np.concatenate(ts))


def read_jaer_dvs128(path: str | os.PathLike, cifar10_dvs_orientation: bool = True) -> np.ndarray:
    """DVS128 events of a jAER AEDAT 2.0 file (big-endian ``uint32`` address, ``uint32`` µs timestamp, read by
    ``tonic.io.get_aer_events_from_file``; x = bits 1–7, y = bits 8–14, polarity = bit 0 as in
    ``tonic.io.read_dvs_128``).

    ``cifar10_dvs_orientation``: CIFAR10-DVS was recorded from a monitor with the sensor turned: the image is
    upright with ``x' = 127 - y``, ``y' = 127 - x``, ``p' = 1 - p`` (SpikingJelly's and the MNIST-DVS ``dat2mat``
    convention, so frames match published pipelines).
    """
    tio = require("tonic.io")
    with open(path, "rb") as f:
        version = _aedat_header_end(f, path)
        start = f.tell()
    if int(version) != 2:
        raise CorruptEventFileError(f"{path}: AEDAT version {version}, expected 2.0 (jAER)")
    if (Path(path).stat().st_size - start) % 8:
        raise CorruptEventFileError(f"{path}: the event data is not a whole number of 8-byte events (truncated?)")
    raw = tio.get_aer_events_from_file(str(path), version, start)
    addr = raw["address"].astype(np.int64)
    x, y, p = (addr >> 1) & 0x7F, (addr >> 8) & 0x7F, addr & 1
    if cifar10_dvs_orientation:
        x, y, p = 127 - y, 127 - x, 1 - p
    return make_events(x, y, p, raw["timeStamp"])


def read_aedat4(path: str | os.PathLike) -> np.ndarray:
    """Events of the first event stream of an AEDAT 4 file (tonic's CIFAR10-DVS repack, DV software), decoded by
    ``tonic.io.read_aedat4`` (the ``aedat`` package)."""
    tio = require("tonic.io")
    require("aedat")
    try:
        ev = tio.read_aedat4(str(path))
    except Exception as e:  # the Rust decoder raises plain Exceptions/OSErrors for damaged files
        raise CorruptEventFileError(f"{path}: cannot decode AEDAT 4 ({type(e).__name__}: {e})") from None
    names = ev.dtype.names  # ('t', 'x', 'y', 'on') from the aedat package
    return make_events(ev["x"], ev["y"], ev[names[3]], ev["t"])


def read_gesture_npy(path: str | os.PathLike) -> np.ndarray:
    """One gesture of tonic's DVS Gesture repack: ``[N, 4]`` array of (x, y, p, t in ms) → t in µs."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise CorruptEventFileError(f"{path}: cannot load .npy ({e})") from None
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise CorruptEventFileError(f"{path}: expected an [N, 4] array (x, y, p, t ms), got shape {arr.shape}")
    return make_events(arr[:, 0], arr[:, 1], arr[:, 2], np.round(arr[:, 3].astype(np.float64) * 1000))


class SpikeHDF5:
    """One SHD/SSC partition file (``shd_train.h5``, ``ssc_valid.h5``, ...), read lazily with h5py.

    Layout of the release (Cramer et al. 2020): ``spikes/times`` (vlen float, seconds), ``spikes/units``
    (vlen int, channel 0–699), ``labels`` ``[N]``, ``extra/...`` (speaker, keys, meta_info; not needed here).
    The file is opened on first access in each process (h5py handles do not survive ``fork``).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        h5py = require("h5py")
        try:
            with h5py.File(self.path, "r") as f:
                for key in ("spikes/times", "spikes/units", "labels"):
                    if key not in f:
                        raise CorruptEventFileError(f"{self.path}: no dataset '{key}' (not an SHD/SSC file)")
                self.labels = np.asarray(f["labels"][()], dtype=np.int64)
                if len(f["spikes/times"]) != len(self.labels) or len(f["spikes/units"]) != len(self.labels):
                    raise CorruptEventFileError(f"{self.path}: spikes/times, spikes/units and labels differ in length")
        except OSError as e:
            raise CorruptEventFileError(f"{self.path}: cannot open as HDF5 ({e}); a .h5.gz download must be "
                                        f"gunzipped first") from None
        self._file = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self):
        return {**self.__dict__, "_file": None, "_pid": None}

    def close(self) -> None:
        """Close the file handle (reopened on the next :meth:`events`)."""
        if self._file is not None:
            self._file.close()
        self._file = None

    def events(self, i: int) -> np.ndarray:
        """Spikes of sample ``i`` as :data:`EVENT_DTYPE` with ``x`` = channel, ``y`` = ``p`` = 0, ``t`` in µs."""
        if self._file is None or self._pid != os.getpid():
            self._file = require("h5py").File(self.path, "r")
            self._pid = os.getpid()
        times = np.asarray(self._file["spikes/times"][i], dtype=np.float64)
        units = np.asarray(self._file["spikes/units"][i], dtype=np.int64)
        if len(times) != len(units):
            raise CorruptEventFileError(f"{self.path}: sample {i} has {len(times)} times but {len(units)} units")
        return make_events(units, 0, 0, np.round(times * 1e6))
