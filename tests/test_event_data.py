"""Event datasets (spaic_train.data.events): every release's real on-disk format written by tests/event_files.py and
read through the datamodules, peers' decoders as references, frames, the cache, splits and bad files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tonic", reason="event data needs the 'events' extra: pip install 'spaic_train[events]'")
pytest.importorskip("h5py", reason="event data needs the 'events' extra: pip install 'spaic_train[events]'")

from event_files import (  # noqa: E402
    make_cifar10_dvs,
    make_gesture,
    make_ncaltech,
    make_shd,
    random_events,
    write_aedat4,
    write_aedat31,
    write_bin,
    write_jaer_dvs128,
)

from spaic_train.data import DATASETS, DataNotFoundError, build_datamodule  # noqa: E402
from spaic_train.data.events import (  # noqa: E402
    CorruptEventFileError,
    FrameAugment,
    FrameSpec,
    events_to_counts,
    read_aedat31,
    read_bin,
    read_jaer_dvs128,
)


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "cache")


# --------------------------------------------------------------------------------------------------- readers
def test_registered():
    assert {"dvs_gesture", "cifar10_dvs", "ncaltech101", "shd", "ssc", "nmnist"} <= set(DATASETS.names())


def test_bin_reader_decodes_the_5_byte_records(tmp_path):
    ev = random_events(np.random.default_rng(1), 200, 34, 34, 300_000)
    write_bin(tmp_path / "a.bin", ev)
    got = read_bin(tmp_path / "a.bin")
    for k in "xypt":
        np.testing.assert_array_equal(got[k], ev[k])


def test_aedat31_matches_spikingjelly_and_handles_overflow_special_packets_and_valid_bit(tmp_path):
    rng = np.random.default_rng(2)
    ev = random_events(rng, 400, 128, 128, 2_000_000, t0=(1 << 31) - 1_000_000)
    write_aedat31(tmp_path / "u.aedat", ev, packet=64)
    got = read_aedat31(tmp_path / "u.aedat")
    for k in "xypt":
        np.testing.assert_array_equal(got[k], ev[k])
    assert got["t"].max() > 1 << 31
    sj = pytest.importorskip("spikingjelly.datasets.utils", reason="peer check needs the 'peers' extra")
    ref = sj.load_aedat_v3(tmp_path / "u.aedat")
    for k in "xyt":
        np.testing.assert_array_equal(got[k], ref[k])
    np.testing.assert_array_equal(got["p"], ref["p"])
    valid = rng.integers(0, 2, 400)
    write_aedat31(tmp_path / "v.aedat", ev, valid=valid)
    np.testing.assert_array_equal(read_aedat31(tmp_path / "v.aedat")["t"], ev["t"][valid == 1])


def test_jaer_reader_matches_spikingjelly_cifar10_dvs(tmp_path):
    ev = random_events(np.random.default_rng(3), 300, 128, 128, 1_000_000, t0=123_456)
    write_jaer_dvs128(tmp_path / "c.aedat", ev)
    got = read_jaer_dvs128(tmp_path / "c.aedat")
    np.testing.assert_array_equal(got["x"], 127 - ev["y"])
    np.testing.assert_array_equal(got["y"], 127 - ev["x"])
    np.testing.assert_array_equal(got["p"], 1 - ev["p"])
    np.testing.assert_array_equal(got["t"], ev["t"])
    sj = pytest.importorskip("spikingjelly.datasets.cifar10_dvs", reason="peer check needs the 'peers' extra")
    ref = sj._load_origin_data(tmp_path / "c.aedat")
    for k in "xypt":
        np.testing.assert_array_equal(got[k], ref[k])


def test_aedat4_written_by_dv_processing(tmp_path):
    pytest.importorskip("dv_processing", reason="writing AEDAT 4 needs the 'events' extra (dv-processing)")
    pytest.importorskip("aedat", reason="reading AEDAT 4 needs the 'events' extra (aedat)")
    from spaic_train.data.events import read_aedat4

    ev = random_events(np.random.default_rng(4), 100, 128, 128, 500_000, t0=10_000)
    write_aedat4(tmp_path / "c.aedat4", ev)
    got = read_aedat4(tmp_path / "c.aedat4")
    for k in "xypt":
        np.testing.assert_array_equal(got[k], ev[k])


def test_truncated_files_are_reported_by_name(tmp_path):
    ev = random_events(np.random.default_rng(5), 50, 34, 34, 100_000)
    write_bin(tmp_path / "a.bin", ev)
    (tmp_path / "b.bin").write_bytes((tmp_path / "a.bin").read_bytes()[:-2])
    with pytest.raises(CorruptEventFileError, match=r"b\.bin.*5-byte"):
        read_bin(tmp_path / "b.bin")
    write_aedat31(tmp_path / "g.aedat", ev)
    (tmp_path / "h.aedat").write_bytes((tmp_path / "g.aedat").read_bytes()[:-10])
    with pytest.raises(CorruptEventFileError, match=r"h\.aedat.*truncated"):
        read_aedat31(tmp_path / "h.aedat")
    (tmp_path / "n.aedat").write_bytes(b"garbage")
    with pytest.raises(CorruptEventFileError, match=r"n\.aedat.*not an AEDAT file"):
        read_jaer_dvs128(tmp_path / "n.aedat")


# ---------------------------------------------------------------------------------------------------- frames
def test_frame_modes_against_direct_computation():
    ev = np.zeros(10, dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
    ev["t"] = [1000, 1500, 2000, 9000, 10000, 10500, 19999, 20000, 25000, 40000]
    ev["x"], ev["y"], ev["p"] = np.arange(10) % 4, np.arange(10) % 3, np.arange(10) % 2
    by_time = events_to_counts(ev, FrameSpec((3, 4), time_steps=3, bin_ms=10.0))
    assert by_time.shape == (3, 2, 3, 4)
    assert by_time.sum(axis=(1, 2, 3)).tolist() == [4, 3, 2]  # [0,10) [10,20) [20,30) ms; 40 ms dropped
    assert by_time[0, 1, 1, 1] == 1  # event 1: x=1, y=1, p=1 at 1.5 ms
    by_count = events_to_counts(ev, FrameSpec((3, 4), time_steps=3, bin_mode="events"))
    assert by_count.sum(axis=(1, 2, 3)).tolist() == [3, 3, 4]  # 10 // 3 per frame, the rest in the last
    by_span = events_to_counts(ev, FrameSpec((3, 4), time_steps=3, bin_mode="duration"))
    # span 1000..40000 µs in 3 equal slices of 13000.33 µs: t < 14000.3, t < 27000.7, the rest
    assert by_span.sum(axis=(1, 2, 3)).tolist() == [6, 3, 1]
    merged = events_to_counts(ev, FrameSpec((3, 4), time_steps=3, bin_ms=10.0, polarity="merge", downsample=2))
    assert merged.shape == (3, 1, 2, 2)
    np.testing.assert_array_equal(merged[:, 0], _pool2(by_time.sum(1)))


def _pool2(x):
    t, h, w = x.shape
    pad = np.zeros((t, h + h % 2, w + w % 2), dtype=x.dtype)
    pad[:, :h, :w] = x
    return pad.reshape(t, pad.shape[1] // 2, 2, pad.shape[2] // 2, 2).sum((2, 4))


def test_events_mode_matches_spikingjelly_split_by_number():
    sj = pytest.importorskip("spikingjelly.datasets.utils", reason="peer check needs the 'peers' extra")
    ev = random_events(np.random.default_rng(6), 1003, 16, 12, 1_000_000)
    arr = np.zeros(1003, dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
    for k in "xypt":
        arr[k] = ev[k]
    ours = events_to_counts(arr, FrameSpec((12, 16), time_steps=7, bin_mode="events"))
    ref = sj.integrate_events_by_fixed_frames_number(ev, "number", 7, 12, 16)
    np.testing.assert_array_equal(ours, ref)


def test_audio_channel_binning():
    ev = np.zeros(4, dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
    ev["x"], ev["t"] = [0, 4, 5, 699], [0, 5000, 12000, 15000]
    f = events_to_counts(ev, FrameSpec((1, 700), time_steps=2, bin_ms=10.0, polarity="merge", channels=140))
    assert f.shape == (2, 140)
    assert f[0, 0] == 2 and f[1, 1] == 1 and f[1, 139] == 1 and f.sum() == 4


# ------------------------------------------------------------------------------------------------ datamodules
def test_shd_datamodule_reads_the_hdf5_release(tmp_path, cache_dir):
    data = make_shd(tmp_path / "shd")
    dm = build_datamodule("shd", root=str(tmp_path), channels=140, time_steps=100, batch_size=4, val_fraction=0.25,
                          cache_dir=cache_dir)
    dm.setup()
    assert dm.input_shape == (140,) and dm.num_classes == 20
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (100, 4, 140) and y.dtype == torch.int64
    # the first test sample (in index order) against a direct binning of the written spikes
    t, u = data["test"][0][0]
    ref = np.zeros((100, 140))
    np.add.at(ref, (np.floor(t.astype(np.float64) * 100).astype(int), u * 140 // 700), 1)
    sample, label = dm.test_set.dataset[0]
    np.testing.assert_array_equal(sample.numpy(), ref)
    assert int(label) == data["test"][1][0]
    ids = dm.split_ids()
    assert len(ids["train"]) == 9 and len(ids["val"]) == 3 and len(ids["test"]) == 12
    assert ids["test"][0] == "shd/shd_test.h5#0"


def test_ssc_uses_the_release_validation_partition(tmp_path, cache_dir):
    make_shd(tmp_path, "ssc", ("train", "valid", "test"), classes=35)
    dm = build_datamodule("ssc", root=str(tmp_path), channels=700, batch_size=4, cache_dir=cache_dir)
    ids = dm.split_ids()
    assert dm.num_classes == 35 and dm.input_shape == (700,) and dm.sequence_length == 100
    assert len(ids["train"]) == 12 and ids["val"][0] == "ssc_valid.h5#0" and len(ids["test"]) == 12


def test_dvs_gesture_aedat_windows_and_npy_repack_give_the_same_frames(tmp_path, cache_dir):
    trials = make_gesture(tmp_path / "ibm")
    dm = build_datamodule("dvs_gesture", root=str(tmp_path / "ibm"), time_steps=4, bin_mode="time", bin_ms=150.0,
                          val_fraction=0.0, batch_size=2, cache_dir=cache_dir)
    ids = dm.split_ids()
    assert len(ids["train"]) == 6 and len(ids["test"]) == 3 and ids["val"] == []
    assert ids["test"][0].startswith("DvsGesture/user24_fluorescent.aedat@")
    # tonic's repack of the same gestures: userNN_<lighting>/<class>.npy with (x, y, p, t ms) columns
    for name, (ev, rows) in trials.items():
        part = "ibmGestureTrain" if int(name[4:6]) <= 23 else "ibmGestureTest"
        for c, a, b in rows:
            m = (ev["t"] >= a) & (ev["t"] < b)
            arr = np.stack([ev["x"][m], ev["y"][m], ev["p"][m], (ev["t"][m] - a) / 1000.0], 1)
            (tmp_path / "npy" / part / name).mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / "npy" / part / name / f"{c - 1}.npy", arr)
    dm2 = build_datamodule("dvs_gesture", root=str(tmp_path / "npy"), time_steps=4, bin_mode="time", bin_ms=150.0,
                           val_fraction=0.0, batch_size=2, cache_dir=cache_dir)
    dm2.setup()
    for i in range(3):
        x1, y1 = dm.test_set.dataset[i]
        x2, y2 = dm2.test_set.dataset[i]
        assert int(y1) == int(y2)
        torch.testing.assert_close(x1, x2, rtol=0, atol=0)
    assert sorted(int(dm.test_set.dataset[i][1]) for i in range(3)) == [0, 4, 10]


def test_cifar10_dvs_tebn_and_plif_splits_by_numeric_index(tmp_path, cache_dir):
    make_cifar10_dvs(tmp_path / "CIFAR10DVS")
    dm = build_datamodule("cifar10_dvs", root=str(tmp_path), time_steps=4, val_fraction=0.0, cache_dir=cache_dir)
    ids = dm.split_ids()
    test_idx = sorted({int(s.rsplit("_", 1)[1].split(".")[0]) for s in ids["test"]})
    train_idx = sorted({int(s.rsplit("_", 1)[1].split(".")[0]) for s in ids["train"]})
    assert test_idx == [0, 1, 99] and train_idx == [100, 101, 102]
    assert len(ids["test"]) == 30
    plif = build_datamodule("cifar10_dvs", root=str(tmp_path), time_steps=4, split="plif", val_fraction=0.0,
                            cache_dir=cache_dir).split_ids()
    # 6 files per class: the first floor(0.9 * 6) = 5 by numeric index train, the last (102) test
    assert {s.rsplit("_", 1)[1] for s in plif["test"]} == {"102.aedat"} and len(plif["train"]) == 50
    with pytest.raises(ValueError, match="data.split='random' is not a split of cifar10_dvs; allowed: tebn, plif"):
        build_datamodule("cifar10_dvs", root=str(tmp_path), split="random")


def test_cifar10_dvs_aedat4_repack(tmp_path, cache_dir):
    pytest.importorskip("dv_processing", reason="writing AEDAT 4 needs the 'events' extra (dv-processing)")
    files = make_cifar10_dvs(tmp_path, indices=(5, 150), fmt="aedat4")
    dm = build_datamodule("cifar10_dvs", root=str(tmp_path), time_steps=2, val_fraction=0.0, cache_dir=cache_dir)
    dm.setup()
    x, y = dm.test_set.dataset[0]  # airplane 5 (test: index < 100), events as stored (no re-orientation)
    ev = files[tmp_path / "airplane" / "cifar10_airplane_5.aedat4"]
    ref = events_to_counts(_structured(ev), FrameSpec((128, 128), time_steps=2, bin_mode="events"))
    np.testing.assert_array_equal(x.numpy(), ref)
    assert int(y) == 0


def _structured(ev):
    arr = np.zeros(len(ev["t"]), dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
    for k in "xypt":
        arr[k] = ev[k]
    return arr


def test_ncaltech101_first20_rule_and_background_excluded(tmp_path, cache_dir):
    make_ncaltech(tmp_path)
    dm = build_datamodule("ncaltech101", root=str(tmp_path), time_steps=2, downsample=4, val_fraction=0.0,
                          cache_dir=cache_dir)
    ids = dm.split_ids()
    assert dm.num_classes == 3 and dm.input_shape == (2, 45, 60)
    # 6 per class: ceil(0.2 * 6) = 2 first by index test
    assert sorted(ids["test"]) == sorted(f"Caltech101/{c}/image_{i:04d}.bin"
                                         for c in ("Faces_easy", "accordion", "airplanes") for i in (1, 2))
    assert not any("BACKGROUND" in s for v in ids.values() for s in v)


# ---------------------------------------------------------------------------------------- split hash, cache
def test_split_hash_is_identical_across_two_fresh_copies(tmp_path):
    make_cifar10_dvs(tmp_path / "a" / "CIFAR10DVS")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    kw = {"time_steps": 2, "val_fraction": 0.2, "seed": 3}
    h1 = build_datamodule("cifar10_dvs", root=str(tmp_path / "a"), cache_dir=str(tmp_path / "c1"), **kw).split_hash()
    h2 = build_datamodule("cifar10_dvs", root=str(tmp_path / "b"), cache=False, **kw).split_hash()
    assert h1 == h2 and len(h1) == 64
    h3 = build_datamodule("cifar10_dvs", root=str(tmp_path / "b"), cache=False, **{**kw, "seed": 4}).split_hash()
    assert h3 != h1  # another validation carve is another split


def test_cache_is_written_once_and_a_new_bin_count_makes_a_new_one(tmp_path, caplog):
    make_shd(tmp_path)
    cache = tmp_path / "cache"
    kw = {"root": str(tmp_path), "channels": 70, "cache_dir": str(cache)}
    with caplog.at_level(logging.INFO, logger="spaic_train"):
        dm = build_datamodule("shd", time_steps=50, **kw)
        dm.setup()
    assert len([r for r in caplog.records if "event frame cache: wrote" in r.message]) == 2
    from spaic_train.data.events.cache import human_size

    dirs = sorted(p.name for p in cache.iterdir())
    test_dir = next(d for d in cache.iterdir() if d.name.startswith("shd-test-"))
    size = sum(f.stat().st_size for f in test_dir.iterdir())
    assert caplog.records[-1].message.endswith(f"({human_size(size)}) to {test_dir}")
    assert len(dirs) == 2 and all(d.startswith(("shd-train-", "shd-test-")) for d in dirs)
    stamp = {p: p.stat().st_mtime_ns for d in cache.iterdir() for p in d.iterdir()}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="spaic_train"):
        again = build_datamodule("shd", time_steps=50, **kw)
        again.setup()
    assert not [r for r in caplog.records if "wrote" in r.message]
    assert stamp == {p: p.stat().st_mtime_ns for d in cache.iterdir() for p in d.iterdir()}
    torch.testing.assert_close(again.test_set.dataset[3][0], dm.test_set.dataset[3][0], rtol=0, atol=0)
    fewer = build_datamodule("shd", time_steps=40, **kw)
    fewer.setup()
    assert len(list(cache.iterdir())) == 4  # new bin count: new caches, the old ones untouched
    assert fewer.test_set.dataset[3][0].shape == (40, 70)
    torch.testing.assert_close(fewer.test_set.dataset[3][0], dm.test_set.dataset[3][0][:40], rtol=0, atol=0)
    uncached = build_datamodule("shd", time_steps=50, cache=False, root=str(tmp_path), channels=70)
    uncached.setup()
    torch.testing.assert_close(uncached.test_set.dataset[3][0], dm.test_set.dataset[3][0], rtol=0, atol=0)


def test_cache_key_follows_file_identity(tmp_path):
    make_shd(tmp_path)
    kw = {"root": str(tmp_path), "channels": 70, "time_steps": 20, "cache_dir": str(tmp_path / "cache")}
    build_datamodule("shd", **kw).setup()
    make_shd(tmp_path, seed=1)  # the files are replaced: other size/mtime -> other key, never the old frames
    build_datamodule("shd", **kw).setup()
    assert len(list((tmp_path / "cache").iterdir())) == 4


def test_corrupt_recordings_are_skipped_with_a_counted_warning(tmp_path, cache_dir):
    make_ncaltech(tmp_path)
    bad = tmp_path / "Caltech101" / "accordion" / "image_0004.bin"
    bad.write_bytes(bad.read_bytes()[:-3])
    with pytest.warns(UserWarning, match=r"skipped 1 of 18 recordings .*image_0004\.bin"):
        dm = build_datamodule("ncaltech101", root=str(tmp_path), time_steps=2, val_fraction=0.0, cache_dir=cache_dir)
        ids = dm.split_ids()
    assert len(ids["train"]) + len(ids["test"]) == 17
    nocache = build_datamodule("ncaltech101", root=str(tmp_path), time_steps=2, val_fraction=0.0, cache=False)
    nocache.setup()
    with pytest.raises(CorruptEventFileError, match="image_0004.bin"):
        for i in range(len(nocache.train_set)):
            nocache.train_set[i]


@pytest.mark.parametrize("name, expected", [
    ("shd", "shd_train.h5, shd_test.h5"), ("ssc", "ssc_train.h5, ssc_valid.h5, ssc_test.h5"),
    ("dvs_gesture", "trials_to_train.txt"), ("cifar10_dvs", "cifar10_<class>_<i>.aedat"),
    ("ncaltech101", "image_NNNN.bin"), ("nmnist", "list file")])
def test_missing_files_one_clear_error(tmp_path, name, expected):
    with pytest.raises(DataNotFoundError) as e:
        build_datamodule(name, root=str(tmp_path / "nowhere"), cache=False).setup()
    msg = str(e.value)
    assert str(tmp_path / "nowhere") in msg and expected in msg and ("http" in msg)


def test_gzipped_shd_is_named(tmp_path):
    (tmp_path / "shd_train.h5.gz").write_bytes(b"")
    with pytest.raises(DataNotFoundError, match="gunzip"):
        build_datamodule("shd", root=str(tmp_path)).setup()


# ---------------------------------------------------------------------------------------------- augmentation
def test_augmentations_equal_their_event_level_definitions():
    ev = _structured(random_events(np.random.default_rng(7), 500, 20, 10, 50_000))
    spec = FrameSpec((10, 20), time_steps=5, bin_ms=10.0)
    base = torch.from_numpy(events_to_counts(ev, spec))
    flipped = ev.copy()
    flipped["x"] = 19 - ev["x"]
    torch.manual_seed(0)
    torch.testing.assert_close(FrameAugment(flip_lr=1.0)(base), torch.from_numpy(events_to_counts(flipped, spec)))
    torch.manual_seed(1)
    dy, dx = (int(v) for v in torch.randint(-3, 4, (2,)))
    moved = ev.copy()
    moved["x"], moved["y"] = ev["x"] + dx, ev["y"] + dy
    torch.manual_seed(1)
    torch.testing.assert_close(FrameAugment(translate_px=3)(base), torch.from_numpy(events_to_counts(moved, spec)))
    torch.manual_seed(2)
    big = torch.full((2000,), 10.0)
    kept = FrameAugment(drop_event=0.3)(big)
    assert kept.max() <= 10 and abs(float(kept.mean()) - 7.0) < 0.15  # Binomial(10, 0.7): mean 7, sd of mean 0.03
    with pytest.raises(ValueError, match=r"data.flip_lr must be a probability in \[0, 1\], got 2"):
        FrameAugment(flip_lr=2)


def test_augmentation_only_on_training_and_clamp_after_it(tmp_path, cache_dir):
    make_ncaltech(tmp_path)
    dm = build_datamodule("ncaltech101", root=str(tmp_path), time_steps=2, val_fraction=0.2, flip_lr=1.0, clamp=True,
                          cache_dir=cache_dir)
    dm.setup()
    plain = build_datamodule("ncaltech101", root=str(tmp_path), time_steps=2, val_fraction=0.2, clamp=True,
                             cache_dir=cache_dir)
    plain.setup()
    i = dm.train_set.indices[0]
    torch.testing.assert_close(dm.train_set.dataset[i][0], plain.train_set.dataset[i][0].flip(-1))
    assert float(dm.train_set.dataset[i][0].max()) <= 1.0
    j = dm.val_set.indices[0]
    torch.testing.assert_close(dm.val_set.dataset[j][0], plain.val_set.dataset[j][0])
    with pytest.raises(ValueError, match="flip_lr / data.translate_px need image frames"):
        FrameAugment(flip_lr=0.5).check_spatial((7,))


def test_denoise_keeps_events_with_a_recent_neighbour():
    """tonic's filter: an event survives when a 4-neighbour pixel had an event within denoise_ms before it (and
    every event of the first denoise_ms passes: its memory starts at denoise_ms, so the times start later here)."""
    ev = np.zeros(4, dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
    ev["x"], ev["y"], ev["t"] = [5, 6, 0, 6], [5, 5, 0, 6], [100_000, 101_000, 102_000, 120_000]
    f = events_to_counts(ev, FrameSpec((8, 8), time_steps=1, bin_ms=200.0, denoise_ms=5.0))
    # (5,5) has no earlier neighbour, (6,5) follows it by 1 ms, (0,0) is alone, (6,6) comes 19 ms after (6,5)
    assert f.sum() == 1 and f[0, 0, 5, 6] == 1
