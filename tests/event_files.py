"""Writers of tiny event files in the releases' real on-disk formats (for the event-data tests): each writer is
the inverse of the format's specification, independent of the readers under test."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                       "truck")

CRLF = "\r\n"


def random_events(rng: np.random.Generator, n: int, width: int, height: int, t_max_us: int, t0: int = 0) -> dict:
    """``n`` events (x, y, p, t sorted) uniform over the sensor and ``[t0, t0 + t_max_us)``."""
    return {"x": rng.integers(0, width, n), "y": rng.integers(0, height, n), "p": rng.integers(0, 2, n),
            "t": np.sort(rng.integers(t0, t0 + t_max_us, n))}


def write_bin(path: Path, ev: dict) -> None:
    """N-MNIST / N-Caltech101 5-byte records: x, y, polarity bit 7 | t bits 22-16, t bits 15-8, t bits 7-0."""
    t = np.asarray(ev["t"], dtype=np.int64)
    assert t.max(initial=0) < 1 << 23
    rec = np.zeros((len(t), 5), dtype=np.uint8)
    rec[:, 0], rec[:, 1] = ev["x"], ev["y"]
    rec[:, 2] = (np.asarray(ev["p"]) << 7) | ((t >> 16) & 0x7F)
    rec[:, 3], rec[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rec.tobytes())


def write_aedat31(path: Path, ev: dict, packet: int = 50, valid: np.ndarray | None = None,
                  special_packet: bool = True) -> None:
    """AEDAT 3.1 (cAER, as IBM's DVS Gesture trials): ASCII header, then packets of 28-byte headers + 8-byte
    polarity events (data = x<<17 | y<<2 | p<<1 | valid; int32 timestamp; bits above 31 in eventTSOverflow).
    A special-event packet (type 0) goes first, as cAER writes timestamp resets."""
    header = ["#!AER-DAT3.1", "#Format: RAW", "#Source 1: DVS128", "#Start-Time: 2017-01-01 12:00:00 (TZ+0000)",
              "#!END-HEADER"]
    out = bytearray(CRLF.join(header).encode() + CRLF.encode())
    if special_packet:
        out += struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 1, 1, 1) + struct.pack("<Ii", 0, 0)
    t = np.asarray(ev["t"], dtype=np.int64)
    ok = np.ones(len(t), dtype=np.int64) if valid is None else np.asarray(valid, dtype=np.int64)
    data = (np.asarray(ev["x"]) << 17) | (np.asarray(ev["y"]) << 2) | (np.asarray(ev["p"]) << 1) | ok
    # a packet never spans a wrap of the 31-bit timestamp (cAER starts a new packet there)
    starts = sorted({*range(0, len(t), packet), *np.flatnonzero(np.diff(t >> 31)) + 1})
    for a, b in zip(starts, [*starts[1:], len(t)]):
        sl = slice(a, b)
        overflow = int(t[a] >> 31)
        n = b - a
        out += struct.pack("<hhiiiiii", 1, 1, 8, 4, overflow, n, n, n)
        rec = np.empty(n, dtype=np.dtype([("data", "<u4"), ("ts", "<i4")]))
        rec["data"], rec["ts"] = data[sl], t[sl] & 0x7FFFFFFF
        out += rec.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))


def write_gesture_csv(path: Path, rows: list[tuple[int, int, int]]) -> None:
    """``userNN_<lighting>_labels.csv``: header, then class (1-11), startTime_usec, endTime_usec."""
    path.write_text("class,startTime_usec,endTime_usec" + CRLF + CRLF.join(f"{c},{a},{b}" for c, a, b in rows) + CRLF)


def write_jaer_dvs128(path: Path, ev: dict) -> None:
    """jAER AEDAT 2.0 (CIFAR10-DVS originals): '#' header lines, big-endian uint32 address (x bits 1-7,
    y bits 8-14, polarity bit 0) and uint32 timestamp (µs) per event."""
    header = ["#!AER-DAT2.0", "# This is a raw AE data file - do not edit",
              "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event",
              "# Timestamps tick is 1 us", "# created Mon Jan 01 12:00:00 CST 2017"]
    addr = (np.asarray(ev["y"]) << 8) | (np.asarray(ev["x"]) << 1) | np.asarray(ev["p"])
    rec = np.empty(len(addr), dtype=np.dtype([("a", ">u4"), ("t", ">u4")]))
    rec["a"], rec["t"] = addr, ev["t"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((CRLF.join(header) + CRLF).encode() + rec.tobytes())


def write_aedat4(path: Path, ev: dict, size: tuple[int, int] = (128, 128)) -> None:
    """AEDAT 4 through iniVation's dv-processing (the writer of the DV software)."""
    import dv_processing as dv

    store = dv.EventStore()
    for x, y, p, t in zip(ev["x"], ev["y"], ev["p"], ev["t"]):
        store.push_back(int(t), int(x), int(y), bool(p))
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer_test", size))
    writer.writeEvents(store)
    del writer  # closes the file


def write_spike_hdf5(path: Path, samples: list[tuple[np.ndarray, np.ndarray]], labels: list[int]) -> None:
    """SHD/SSC partition file: vlen ``spikes/times`` (s), vlen ``spikes/units``, ``labels``, ``extra/...``."""
    import h5py

    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(samples):
            times[i], units[i] = np.asarray(t, dtype=np.float16), np.asarray(u, dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(len(labels), dtype=np.uint16))
        f.create_dataset("extra/keys", data=np.array([b"zero", b"one"]))


def random_spike_sample(rng: np.random.Generator, n: int, duration_s: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Times (s, float16-representable, sorted) and units (0-699) of one SHD-like sample."""
    t = np.sort(rng.uniform(0, duration_s, n)).astype(np.float16)
    return np.sort(t), rng.integers(0, 700, n)


# ------------------------------------------------------------------------------- tiny releases in their layouts
def make_shd(root: Path, name: str = "shd", partitions=("train", "test"), n: int = 12, classes: int = 20,
             seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, part in enumerate(partitions):
        samples = [random_spike_sample(rng, int(rng.integers(20, 60))) for _ in range(n)]
        labels = [(i + k) % classes for i in range(n)]
        write_spike_hdf5(root / f"{name}_{part}.h5", samples, labels)
        out[part] = (samples, labels)
    return out


def make_gesture(root: Path, users=(1, 2, 24), seed: int = 0) -> dict:
    """IBM layout: one trial per user with 3 gestures, trials_to_train/test lists."""
    rng = np.random.default_rng(seed)
    d = root / "DvsGesture"
    trials = {}
    for u in users:
        name = f"user{u:02d}_fluorescent"
        ev = random_events(rng, 300, 128, 128, 3_000_000, t0=(1 << 31) - 1_000_000)  # crosses the 2^31 overflow
        write_aedat31(d / f"{name}.aedat", ev)
        rows = [(c, int(ev["t"][0]) + 1000 * c * 700, int(ev["t"][0]) + 1000 * (c * 700 + 600)) for c in (1, 5, 11)]
        write_gesture_csv(d / f"{name}_labels.csv", rows)
        trials[name] = (ev, rows)
    (d / "trials_to_train.txt").write_text("".join(f"{n}.aedat\r\n" for n in trials if int(n[4:6]) <= 23))
    (d / "trials_to_test.txt").write_text("".join(f"{n}.aedat\r\n" for n in trials if int(n[4:6]) > 23))
    return trials


def make_cifar10_dvs(root: Path, indices=(0, 1, 99, 100, 101, 102), fmt: str = "aedat", seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    files = {}
    for c in CIFAR10_DVS_CLASSES:
        for i in indices:
            ev = random_events(rng, 40, 128, 128, 200_000, t0=5_000_000)
            path = root / c / f"cifar10_{c}_{i}.{fmt}"
            (write_jaer_dvs128 if fmt == "aedat" else write_aedat4)(path, ev)
            files[path] = ev
    return files


def make_ncaltech(root: Path, classes=("Faces_easy", "accordion", "airplanes"), n: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    files = {}
    for c in (*classes, "BACKGROUND_Google"):
        for i in range(1, n + 1):
            ev = random_events(rng, 50, 240, 180, 300_000)
            path = root / "Caltech101" / c / f"image_{i:04d}.bin"
            write_bin(path, ev)
            files[path] = ev
    return files
