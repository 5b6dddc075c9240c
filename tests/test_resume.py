"""Exact resume: a fit killed mid-epoch and resumed with ``resume='last'`` ends exactly like an uninterrupted one
(same weights bit for bit, same History), in one process and under 2-process DDP (one rank SIGKILLed).  Poisson
encoder (global torch RNG, a different stream per process), dropout, shuffled data, cosine scheduler.

Bitwise is right here: the resumed run executes the same kernels on the same batches (same shapes, one thread)
in the same order as the uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

import spaic_train as spaic
from spaic_train.training import SNNModule, fit

QUIET = dict(enable_progress_bar=False, logger=False, accelerator="cpu", devices=1)

CHILD = textwrap.dedent('''
    import json, os, sys, time
    import torch
    torch.set_num_threads(1)
    import lightning.pytorch as pl
    from sklearn.datasets import load_digits
    import spaic_train as spaic
    from spaic_train.training import SNNModule, fit

    mode, ckdir, out, stall_at, devices = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

    class Net(spaic.Network):
        def __init__(self):
            super().__init__(dt=1.0, time_steps=6)
            self.input = spaic.Encoder(shape=(64,), coding="poisson")
            self.hidden = spaic.NeuronGroup(32, model="lif", tau=4.0)
            self.out = spaic.NeuronGroup(10, model="lif", tau=4.0)
            self.c1 = spaic.Connection(self.input, self.hidden, link_type="full", syn_type=["basic", "dropout"],
                                       syn_kwargs={"p": 0.1})
            self.c2 = spaic.Connection(self.hidden, self.out, link_type="full")
            self.dec = spaic.Decoder(self.out, coding="spike_counts")

    class Stall(pl.Callback):
        """On the last rank: announce that the checkpoint of the previous step is on disk (Lightning's save ends
        with a barrier), then wait to be SIGKILLed."""
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == stall_at and trainer.global_rank == trainer.world_size - 1:
                print("STALLED", trainer.global_step, batch_idx, os.getpid(), flush=True)
                time.sleep(600)

    d = load_digits()
    x = torch.tensor(d.data[:600] / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target[:600])
    torch.manual_seed(0)
    net = Net()
    module = SNNModule(net, loss="ce_count", optimizer="adam", lr=5e-3, scheduler="cosine")
    h = fit(module, x, y, epochs=2, batch_size=64, validation_split=0.1, seed=1, logger=False, accelerator="cpu",
            devices=devices, strategy="ddp" if devices > 1 else "auto", enable_progress_bar=False,
            checkpoint_dir=ckdir, checkpoint_every_n_steps=2, resume="last" if mode == "resume" else None,
            callbacks=[Stall()] if mode == "kill" else [])
    if h.trainer.is_global_zero:
        torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, out + ".pt")
        with open(out + ".json", "w") as fh:
            json.dump({"history": h.history, "epoch": h.epoch, "steps": h.params["steps"]}, fh)
        print("DONE", flush=True)
''')


ROOT = Path(__file__).resolve().parents[1]
# the scripts import this checkout's spaic_train; ranks and addresses come from Lightning's launcher
ENV = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_PORT")}
ENV["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def _run(script, *args):
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=ENV)


@pytest.mark.slow
@pytest.mark.parametrize("devices, stall_at, steps", [(1, 5, 18), (2, 3, 10)], ids=["1-process", "ddp-2-processes"])
def test_sigkill_mid_epoch_then_resume_is_exact(tmp_path, devices, stall_at, steps):
    """540 training samples, batches of 64 per process, checkpoints every 2 steps; the (last) process is killed
    before step ``stall_at``, mid epoch 0.  One process: 9 steps per epoch.  Two: 5 per epoch (270-sample shards),
    and SIGKILL of rank 1 makes Lightning's process observer kill rank 0 too."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    ref = subprocess.Popen([sys.executable, str(script), "ref", str(tmp_path / "ck_ref"), str(tmp_path / "ref"), "-1",
                            str(devices)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    child = subprocess.Popen([sys.executable, str(script), "kill", str(tmp_path / "ck"), str(tmp_path / "kill"),
                              str(stall_at), str(devices)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV)
    line = child.stdout.readline()
    assert line.startswith(f"STALLED {stall_at} {stall_at} "), line
    os.kill(int(line.split()[3]), signal.SIGKILL)
    assert child.wait(timeout=120) != 0
    assert not (tmp_path / "kill.pt").exists()
    ck = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)
    done = stall_at - 1  # the checkpoint of step stall_at - 1 (every 2 steps) is the last one
    assert ck["global_step"] == done and ck["spaic_resume"]["batches_done"] == done  # a mid-epoch checkpoint
    assert len(ck["spaic_resume"]["ranks"]) == devices  # every process's RNG states and partial sums

    res = _run(script, "resume", tmp_path / "ck", tmp_path / "res", -1, devices)
    assert res.returncode == 0, res.stderr[-3000:]
    out, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err[-3000:]

    a = torch.load(tmp_path / "ref.pt", weights_only=True)
    b = torch.load(tmp_path / "res.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha = json.loads((tmp_path / "ref.json").read_text())
    hb = json.loads((tmp_path / "res.json").read_text())
    assert ha == hb
    assert ha["steps"] == steps and ha["epoch"] == [0, 1]


# ------------------------------------------------------------------------------------------------ in-process
class Crash(RuntimeError):
    pass


class _Crash(pl.Callback):
    def __init__(self, at):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            raise Crash(f"simulated crash before step {self.at}")


def _net():
    net = spaic.Network(time_steps=4)
    net.input = spaic.Encoder(shape=(16,), coding="poisson")
    net.h = spaic.NeuronGroup(12, model="lif", tau=3.0)
    net.out = spaic.NeuronGroup(4, model="lif", tau=3.0)
    net.c1 = spaic.Connection(net.input, net.h, syn_type=["basic", "dropout"], syn_kwargs={"p": 0.2})
    net.c2 = spaic.Connection(net.h, net.out)
    net.fb = spaic.Connection(net.out, net.h, max_delay=2.0)
    net.dec = spaic.Decoder(net.out, coding="spike_counts")
    return net


def _fit(ckdir, resume=None, crash_at=None):
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(70, 16, generator=g), torch.randint(0, 4, (70,), generator=g)
    torch.manual_seed(0)
    net = _net()
    cbs = [_Crash(crash_at)] if crash_at is not None else []
    h = fit(SNNModule(net, loss="ce_count", lr=1e-2, scheduler="step"), x, y, epochs=2, batch_size=8, seed=5,
            validation_split=0.2, checkpoint_dir=str(ckdir), checkpoint_every_n_steps=3, resume=resume,
            callbacks=cbs, **QUIET)
    return net, h


def test_in_process_mid_epoch_resume_is_exact(tmp_path):
    ref_net, ref_h = _fit(tmp_path / "ref")
    with pytest.raises(Crash):
        _fit(tmp_path / "ck", crash_at=4)
    ck = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)
    assert ck["global_step"] == 3 and ck["spaic_resume"]["batches_done"] == 3
    net, h = _fit(tmp_path / "ck", resume="last")
    for k, v in ref_net.state_dict().items():
        assert torch.equal(v, net.state_dict()[k]), k
    assert h.history == ref_h.history and h.epoch == ref_h.epoch == [0, 1]
    assert h.params["steps"] == ref_h.params["steps"]


def test_epoch_boundary_resume_is_exact(tmp_path):
    ref_net, ref_h = _fit(tmp_path / "ref")
    with pytest.raises(Crash):
        _fit(tmp_path / "ck", crash_at=7)  # 56 samples / 8 = 7 steps per epoch: stops right after epoch 0
    ck = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=True)
    assert ck["global_step"] in (6, 7)
    net, h = _fit(tmp_path / "ck", resume="last")
    for k, v in ref_net.state_dict().items():
        assert torch.equal(v, net.state_dict()[k]), k
    assert h.history == ref_h.history


def test_resume_reads_checkpoints_of_the_single_process_format(tmp_path):
    """Checkpoints written before the per-process states ('ranks') held one 'rng' and 'metrics' entry: they
    still resume exactly."""
    ref_net, ref_h = _fit(tmp_path / "ref")
    with pytest.raises(Crash):
        _fit(tmp_path / "ck", crash_at=4)
    path = tmp_path / "ck" / "last.ckpt"
    ck = torch.load(path, weights_only=True)
    (mine,) = ck["spaic_resume"].pop("ranks")
    ck["spaic_resume"].update(rng=mine["rng"], metrics=mine["metrics"])
    torch.save(ck, path)
    net, h = _fit(tmp_path / "ck", resume="last")
    for k, v in ref_net.state_dict().items():
        assert torch.equal(v, net.state_dict()[k]), k
    assert h.history == ref_h.history
