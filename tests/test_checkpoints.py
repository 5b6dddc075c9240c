"""Crash-safe checkpoint writing and safe, checked loading (spaic_train.io, spaic_train.training.checkpoint)."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil

import pytest
import torch

import spaic_train as spaic
from spaic_train.io import CheckpointError, atomic_torch_save, load_checkpoint_safely
from spaic_train.training import SNNModule, fit
from spaic_train.training.checkpoint import AtomicCheckpointIO, check_checkpoint

QUIET = dict(enable_progress_bar=False, logger=False, accelerator="cpu", devices=1)


def small_net():
    net = spaic.Network(time_steps=4)
    net.input = spaic.Encoder(shape=(8,), coding="poisson")
    net.out = spaic.NeuronGroup(3, model="lif")
    net.c = spaic.Connection(net.input, net.out, link_type="full")
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    return net


def data(n=32):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def digest(folder):
    names = sorted(os.listdir(folder))
    return {f: hashlib.sha256(open(os.path.join(folder, f), "rb").read()).hexdigest() for f in names}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint directory of a 2-epoch fit (last.ckpt + best)."""
    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    x, y = data()
    history = fit(SNNModule(small_net()), x, y, epochs=2, batch_size=8, checkpoint_dir=str(d), seed=0, **QUIET)
    return d, history


class Evil:
    """Unpickling this runs ``os.system`` (creates a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------------------------------------------ writing
def test_fit_uses_atomic_checkpoint_io(trained):
    d, history = trained
    assert isinstance(history.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert "last.ckpt" in os.listdir(d)
    assert not [f for f in os.listdir(d) if f.endswith(".tmp")]
    ckpt = check_checkpoint(d / "last.ckpt")  # loads with weights_only=True
    assert "spaic_resume" in ckpt and "state_dict" in ckpt


def test_atomic_save_interrupted_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"w": torch.ones(3)}, path)
    before = path.read_bytes()

    real_replace = os.replace

    def crash(*a, **k):  # the process "dies" after writing the temp file, before the rename
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"w": torch.zeros(1000)}, path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.ckpt"]  # temp file cleaned up
    assert torch.equal(load_checkpoint_safely(path)["w"], torch.ones(3))


def test_atomic_save_unpicklable_leaves_destination(tmp_path):
    path = tmp_path / "x.ckpt"
    atomic_torch_save({"a": 1}, path)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        atomic_torch_save({"a": lambda: 0}, path)
    assert load_checkpoint_safely(path) == {"a": 1}
    assert os.listdir(tmp_path) == ["x.ckpt"]


def test_killed_mid_write_leaves_previous_last(tmp_path):
    """A child process SIGKILLed while writing (slow, huge temp write) leaves the previous checkpoint readable."""
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1, "w": torch.ones(4)}, path)
    code = (
        "import sys, torch, io\n"
        "from spaic_train.io import atomic_torch_save\n"
        "import os\n"
        "real = os.fsync\n"
        "def slow(fd):\n"
        "    print('WRITING', flush=True); import time; time.sleep(60)\n"
        "os.fsync = slow\n"
        f"atomic_torch_save({{'step': 2, 'w': torch.zeros(100000)}}, {str(path)!r})\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    t0 = time.time()
    assert p.stdout.readline().strip() == "WRITING"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert time.time() - t0 < 60
    ck = load_checkpoint_safely(path)
    assert ck["step"] == 1 and torch.equal(ck["w"], torch.ones(4))


# ------------------------------------------------------------------------------------------------ loading
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip"])
def test_resume_from_damaged_checkpoint_fails_clearly(trained, tmp_path, damage):
    d, _ = trained
    work = tmp_path / "ck"
    shutil.copytree(d, work)
    bad = work / "last.ckpt"
    raw = bad.read_bytes()
    if damage == "truncate":
        bad.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        bad.write_bytes(os.urandom(4096))
    elif damage == "empty":
        bad.write_bytes(b"")
    else:  # flip bytes inside a stored member: the CRC check catches it
        mid = len(raw) // 2
        bad.write_bytes(raw[:mid] + bytes(b ^ 0xFF for b in raw[mid:mid + 64]) + raw[mid + 64:])
    before = digest(work)
    x, y = data()
    with pytest.raises(CheckpointError, match="truncated or corrupt|not a PyTorch file") as info:
        fit(SNNModule(small_net()), x, y, epochs=3, batch_size=8, checkpoint_dir=str(work), resume="last", **QUIET)
    assert str(bad) in str(info.value)
    assert digest(work) == before  # nothing overwritten, nothing added


def test_resume_explicit_path_damaged(trained, tmp_path):
    d, _ = trained
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes((d / "last.ckpt").read_bytes()[:1000])
    x, y = data()
    with pytest.raises(CheckpointError, match="cut.ckpt"):
        fit(SNNModule(small_net()), x, y, epochs=3, batch_size=8, resume=str(bad), **QUIET)


def test_malicious_checkpoint_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Evil(marker)}, evil)
    with pytest.raises(CheckpointError, match="unsafe"):
        load_checkpoint_safely(evil)
    x, y = data()
    with pytest.raises(CheckpointError, match="unsafe") as info:
        fit(SNNModule(small_net()), x, y, epochs=1, batch_size=8, resume=str(evil), **QUIET)
    assert "evil.ckpt" in str(info.value)
    assert not marker.exists()


def test_malicious_plain_pickle_refused(tmp_path):
    marker = tmp_path / "pwned2"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint_safely(evil)
    assert not marker.exists()


def test_keras_load_model_refuses_malicious_file(tmp_path):
    from spaic_train.keras import load_model

    marker = tmp_path / "pwned3"
    evil = tmp_path / "model.pt"
    torch.save({"config": {}, "weights": Evil(marker)}, evil)
    with pytest.raises(Exception) as info:
        load_model(evil)
    assert "weights" in str(info.value).lower() or "unsupported" in str(info.value).lower()
    assert not marker.exists()


def test_not_a_training_checkpoint(tmp_path):
    p = tmp_path / "weights.pt"
    torch.save({"w": torch.ones(2)}, p)
    with pytest.raises(CheckpointError, match="not a Lightning training checkpoint"):
        check_checkpoint(p)


def test_resume_continues_to_more_epochs(trained, tmp_path):
    d, _ = trained
    work = tmp_path / "ck"
    shutil.copytree(d, work)
    x, y = data()
    h = fit(SNNModule(small_net()), x, y, epochs=3, batch_size=8, checkpoint_dir=str(work), resume="last",
            seed=0, **QUIET)
    assert h.epoch == [0, 1, 2] and len(h.history["loss"]) == 3
