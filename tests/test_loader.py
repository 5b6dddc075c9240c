"""Data loading that fits the machine: ``data.num_workers: auto`` (spaic_train.data.workers), the decoded-image
cache (spaic_train.data.decoded) against the JPEG path, and the loader benchmark / GPU check's real data path."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from spaic_train.data import CIFAR10DataModule, build_datamodule
from spaic_train.data.decoded import DecodedAugment, FloatBatch, decoded_images
from spaic_train.data.workers import TrainerContext, resolve_loader_options

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cores(monkeypatch):
    """Pretend this process may run on ``n`` cores (``os.sched_getaffinity``)."""
    def set_cores(n: int):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)
    return set_cores


# ------------------------------------------------------------------------------------------- num_workers: auto
@pytest.mark.parametrize("n, expected", [(1, 0), (2, 1), (8, 7), (16, 15)])
def test_auto_workers_are_the_cores_less_one_for_training(cores, n, expected):
    cores(n)
    dm = CIFAR10DataModule()
    opts = dm.loader_options()
    assert dm.num_workers == "auto" and opts.num_workers == expected
    assert not opts.pin_memory and not opts.persistent_workers  # no trainer: CPU, loaders used once
    assert f"{n} core" in opts.reason and f"{expected} worker process" in opts.reason


def test_auto_workers_share_the_cores_among_the_ddp_processes(cores):
    import lightning.pytorch as pl

    cores(8)
    trainer = pl.Trainer(accelerator="cpu", devices=4, strategy="ddp", max_epochs=3, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    dm = CIFAR10DataModule()
    dm.trainer = trainer
    assert TrainerContext.of(trainer).processes_per_machine == 4
    assert dm.loader_options().num_workers == 8 // 4 - 1
    cores(4)
    assert dm.loader_options().num_workers == 0  # one core per process: it trains, nothing left for workers
    # the GPU case, with the same arithmetic: 16 cores shared by 2 CUDA processes of a 200-epoch fit
    opts = resolve_loader_options("auto", "auto", True, TrainerContext(2, cuda=True, multi_epoch_fit=True), cores=16)
    assert (opts.num_workers, opts.pin_memory, opts.persistent_workers) == (7, True, True)
    opts = resolve_loader_options("auto", "auto", True, TrainerContext(1, cuda=True, multi_epoch_fit=False), cores=16)
    assert (opts.num_workers, opts.pin_memory, opts.persistent_workers) == (15, True, False)


def test_context_of_a_real_fit_is_a_multi_epoch_fit():
    """Inside ``trainer.fit`` the datamodule sees the fit's device count and epochs (persistent workers)."""
    import lightning.pytorch as pl

    seen = {}

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(64, 10)

        def training_step(self, batch, i):
            seen["ctx"] = TrainerContext.of(self.trainer)
            seen["opts"] = self.trainer.datamodule.loader_options()
            return torch.nn.functional.cross_entropy(self.lin(batch[0].flatten(1)), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=2, limit_train_batches=1, limit_val_batches=0,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(Probe(), datamodule=build_datamodule("digits"))
    assert seen["ctx"] == TrainerContext(1, cuda=False, multi_epoch_fit=True)
    assert seen["opts"].num_workers == 0 and not seen["opts"].persistent_workers


def test_explicit_values_win(cores):
    cores(16)
    opts = resolve_loader_options(3, False, True, TrainerContext(4, cuda=True, multi_epoch_fit=True))
    assert (opts.num_workers, opts.pin_memory, opts.persistent_workers) == (3, False, True)
    assert resolve_loader_options(0, True, True, TrainerContext(multi_epoch_fit=True)).persistent_workers is False
    dm = CIFAR10DataModule(num_workers=2, pin_memory=True)
    assert (dm.loader_options().num_workers, dm.loader_options().pin_memory) == (2, True)
    dm = build_datamodule("digits", num_workers=2)  # explicit beats "workers cannot help" too
    assert dm.loader_options().num_workers == 2 and dm.train_dataloader().num_workers == 2


@pytest.mark.parametrize("name", ["digits", "digits_rows", "delay_coincidence"])
def test_in_memory_sets_stay_at_zero_workers(cores, name):
    cores(16)
    dm = build_datamodule(name)
    assert dm.num_workers == "auto" and dm.loader_options().num_workers == 0
    assert dm.train_dataloader().num_workers == 0


def test_choice_is_logged_once(cores, caplog):
    cores(1)
    dm = build_datamodule("digits")
    with caplog.at_level(logging.INFO, logger="spaic_train"):
        dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data loading:")]
    assert lines == ["data loading: 0 worker processes per training process (data.num_workers=auto: in-memory "
                     "data, nothing for workers to do), pin_memory=False, persistent_workers=False"]


# ------------------------------------------------------------------------------------------------ decoded cache
@pytest.fixture(scope="module")
def jpeg_root(shared_data):
    root = shared_data / "cifar10-jpeg"
    if not (root / "CIFAR-10-images_train.tar").is_file():
        pytest.skip(f"needs the CIFAR-10 JPEG tars in {root}")
    return root


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """One extraction / decoded cache for the module's tests (they all use 12 images per class)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cache(module_cache, monkeypatch):
    monkeypatch.setenv("SPAIC_TRAIN_CACHE", str(module_cache))
    return module_cache


def _batches(dm, split, epochs=1):
    torch.manual_seed(7)  # the main process's RNG: what augmentation draws from with 0 workers
    loader = getattr(dm, f"{split}_dataloader")()
    return [b for _ in range(epochs) for b in loader]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_decoded_cache_gives_the_jpeg_paths_batches_bit_for_bit(jpeg_root, cache, num_workers):
    """Same seed → same batches, every split, two epochs, with the full augmentation (crop, flip, AutoAugment,
    Cutout) drawn in the main process (0 workers) or in 2 workers (each seeded from the loader's generator)."""
    kw = dict(root=str(jpeg_root), format="folder", limit_per_class=12, batch_size=16, val_fraction=0.25,
              autoaugment="cifar10", cutout=16, num_workers=num_workers, seed=3)
    jpeg, decoded = CIFAR10DataModule(decode_once=False, **kw), CIFAR10DataModule(decode_once=True, **kw)
    for split, epochs in (("train", 2), ("val", 1), ("test", 1)):
        a, b = _batches(jpeg, split, epochs), _batches(decoded, split, epochs)
        assert len(a) == len(b) > 1
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xa.dtype == xb.dtype == torch.float32 and ya.dtype == yb.dtype == torch.int64
            assert torch.equal(xa, xb) and torch.equal(ya, yb), split
    train = _batches(decoded, "train", 2)
    n = len(train) // 2
    assert not torch.equal(train[0][0], train[n][0])  # a new shuffle and new augmentation every epoch
    assert any(len(list((cache / "decoded").glob(f"{s}-*.npy"))) == 1 for s in ("train", "test"))


def test_decoded_augment_draws_like_torchvision():
    """Crop + flip + AutoAugment + Cutout on the array == the torchvision/PIL pipeline on the image, sample by
    sample, and both leave torch's RNG in the same state."""
    from PIL import Image

    from spaic_train.data.folder import image_transforms

    train_tf, _ = image_transforms(None, True, None, None, crop_size=(32, 32), autoaugment="cifar10", cutout=8)
    aug = DecodedAugment((32, 32), 4, True, "cifar10", 8)
    imgs = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    torch.manual_seed(0)
    ref = torch.stack([train_tf(Image.fromarray(im)) for im in imgs])
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    ours = FloatBatch()([(torch.from_numpy(np.ascontiguousarray(aug(im).transpose(2, 0, 1))), 0) for im in imgs])[0]
    assert torch.equal(ours, ref) and torch.equal(torch.random.get_rng_state(), state)


def test_float_batch_is_to_tensor_and_normalize():
    from torchvision import transforms as T

    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    x = torch.randint(0, 256, (5, 3, 7, 9), dtype=torch.uint8)
    got, y = FloatBatch(mean, std)([(im, i) for i, im in enumerate(x)])
    ref = torch.stack([T.Normalize(mean, std)(im.to(torch.float32).div(255)) for im in x])
    assert torch.equal(got, ref) and y.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(FloatBatch()([(x[0], 0)])[0][0], x[0].float() / 255)


def _folder(tmp_path, n=6):
    from PIL import Image

    rng = np.random.default_rng(1)
    files = []
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            p = tmp_path / "imgs" / cls / f"{i}.png"
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(p)
            files.append((str(p), int(cls == "b")))
    return tmp_path / "imgs", files


def test_cache_is_announced_and_a_changed_source_makes_a_new_cache(tmp_path, caplog):
    from PIL import Image

    root, files = _folder(tmp_path)
    with caplog.at_level(logging.INFO, logger="spaic_train"):
        first = decoded_images(files, root, cache_dir=tmp_path / "c")
    assert any("decoding 12 images" in r.getMessage() and "MB uint8" in r.getMessage() for r in caplog.records)
    arr = np.load(first)
    assert arr.shape == (12, 8, 8, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr[3], np.asarray(Image.open(files[3][0]).convert("RGB")))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="spaic_train"):
        assert decoded_images(files, root, cache_dir=tmp_path / "c") == first  # reused, silently
    assert not caplog.records
    new_pixels = np.full((8, 8, 3), 200, dtype=np.uint8)
    Image.fromarray(new_pixels).save(files[3][0])  # same name and size, new content and mtime
    os.utime(files[3][0], ns=(1, 10**18))
    second = decoded_images(files, root, cache_dir=tmp_path / "c")
    assert second != first and np.array_equal(np.load(second)[3], new_pixels)
    third = decoded_images(files[:-1], root, cache_dir=tmp_path / "c")  # a removed file: another cache
    assert third not in (first, second) and len(np.load(third)) == 11


def test_interrupted_decoding_leaves_no_cache(tmp_path, monkeypatch):
    from spaic_train.data import decoded

    root, files = _folder(tmp_path)
    real = decoded.PILLoader.__call__
    calls = []

    def dies_at_the_fifth(self, path):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, path)

    monkeypatch.setattr(decoded.PILLoader, "__call__", dies_at_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        decoded_images(files, root, cache_dir=tmp_path / "c")
    assert list((tmp_path / "c" / "decoded").iterdir()) == []  # neither the final file nor the temporary one
    monkeypatch.setattr(decoded.PILLoader, "__call__", real)
    # a run killed outright (no cleanup) leaves its temporary file: never read, and deleted by the next run
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    key = decoded.cache_key(files, root, "RGB")
    leftover = tmp_path / "c" / "decoded" / f".imgs-12x8x8x3-{key}.npy.tmp-{int(dead.stdout)}"
    leftover.write_bytes(b"half a cache")
    path = decoded_images(files, root, cache_dir=tmp_path / "c")
    assert len(np.load(path)) == 12 and [p.name for p in (tmp_path / "c" / "decoded").iterdir()] == [path.name]


# ------------------------------------------------------------------------------------- benchmark and GPU check
def _bench_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import loader
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return loader


def _check_quick(res: dict, printed: str):
    assert set(res["median"]) == {f"{s}|{a}|{w}" for s in ("jpeg", "decoded")
                                  for a in ("crop+flip", "crop+flip+AA+cutout") for w in (0, 1)}
    assert all(v > 0 for v in res["median"].values()) and res["info"]["cpu"]["cores"] >= 1
    assert res["ratios"]["decoded/jpeg, 0 workers, crop+flip"] == pytest.approx(
        res["median"]["decoded|crop+flip|0"] / res["median"]["jpeg|crop+flip|0"])
    assert res["ratios"]["decoded/jpeg, 0 workers, CPU time, crop+flip"] == pytest.approx(
        res["cpu_median"]["decoded|crop+flip|0"] / res["cpu_median"]["jpeg|crop+flip|0"])
    assert "| decoded | crop+flip+AA+cutout |" in printed and "decoded / JPEG" in printed


def test_loader_benchmark_quick_in_process(jpeg_root, cache, tmp_path, capsys):
    """``benchmarks/loader.py --quick`` end to end (in this process: a new interpreter costs more than the run)."""
    assert _bench_module().main(["--quick", "--data", str(jpeg_root), "--json", str(tmp_path / "l.json")]) == 0
    _check_quick(json.loads((tmp_path / "l.json").read_text()), capsys.readouterr().out)


@pytest.mark.slow
def test_loader_benchmark_quick(jpeg_root, cache):
    """``python benchmarks/loader.py --quick`` as the README prints it (data from $SPAIC_TRAIN_DATA)."""
    env = dict(os.environ, SPAIC_TRAIN_DATA=str(jpeg_root.parent), SPAIC_TRAIN_CACHE=str(cache),
               PYTHONPATH=str(ROOT))
    proc = subprocess.run("python benchmarks/loader.py --quick".split(), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _check_quick(json.loads((ROOT / "benchmarks" / "results" / "loader.json").read_text()), proc.stdout)


@pytest.mark.slow
def test_loader_benchmark_full(jpeg_root, tmp_path):
    """``python benchmarks/loader.py`` as the README prints it (minutes on 2 cores)."""
    env = dict(os.environ, SPAIC_TRAIN_DATA=str(jpeg_root.parent), SPAIC_TRAIN_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT))
    proc = subprocess.run(["python", "benchmarks/loader.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((ROOT / "benchmarks" / "results" / "loader.json").read_text())
    assert len(res["median"]) == 12 and res["info"]["rounds"] == 5
    assert res["ratios"]["decoded/jpeg, 0 workers, crop+flip"] > 1


def test_gpu_check_times_the_real_data_path(jpeg_root, cache):
    """The dry-run sizes of ``gpu_check.py``: a recipe's steps on real CIFAR-10 batches (decoded cache, the recipe's
    AutoAugment + Cutout, num_workers auto) next to the synthetic ones."""
    pytest.importorskip("spikingjelly")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    size = dict(gpu_check.DRY["epochs"], warmup=1, batches=1, real_batches=2)
    e = gpu_check.bench_epoch("cifar_snn", torch.device("cpu"), size, jpeg_root)
    r = e["real_data"]
    assert r["measured"] and r["decode_once"] and r["autoaugment"] == "cifar10" and r["cutout"] == 16
    assert r["train_images"] == 108 and r["timed_batches"] == 2 and r["num_workers"] >= 0
    assert r["real_over_synthetic"] == pytest.approx(r["seconds_per_batch"] / e["seconds_per_batch"])
    assert r["loader_bound"] == (r["seconds_per_batch"] > gpu_check.LOADER_BOUND_FACTOR * e["seconds_per_batch"])
    md = gpu_check.markdown({"dry_run": True, "date": "d", "torch": "t", "cuda": None, "spikingjelly": "s",
                             "pytest": {"ran": False}, "lif": {"size": {"N": 1, "T": 1, "B": 1},
                             "median_ms": {"spaic_train": 1.0, "spikingjelly": 1.0}, "ratio_ours_over_sj": 1.0,
                             "spike_agreement": 1.0}, "epochs": {"cifar_snn": e},
                             "long_t": {"size": gpu_check.DRY["long_t"], "memory": "peak CUDA memory", "rows": {}}})
    assert "a slice of a real epoch" in md and "| `cifar_snn` |" in md.split("a slice of a real epoch")[1]
    missing = gpu_check.bench_real_data(None, None, torch.device("cpu"), size, jpeg_root / "nowhere", 1.0)
    assert not missing["measured"] and "nowhere" in missing["reason"]


def test_a_bad_value_from_the_command_line_is_a_config_error():
    """``python train.py data.num_workers=many``: the constructor's message as a ConfigError (exit 2, no traceback)."""
    from spaic_train.cli import ConfigError, build_datamodule_from_config

    with pytest.raises(ConfigError, match=r"data\.num_workers must be 'auto' or an int >= 0 .* got 'many'"):
        build_datamodule_from_config({"name": "digits", "num_workers": "many"})
    assert build_datamodule_from_config({"name": "digits", "num_workers": 3}).num_workers == 3
