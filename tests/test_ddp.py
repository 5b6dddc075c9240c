"""Multi-process (DDP, gloo, 2 CPU processes) training, evaluation and prediction through ``spaic_train.training``.

``strategy='ddp'`` relaunches the calling script for rank 1, so the run is a script written to ``tmp_path`` and
started with ``python`` in a subprocess.  Each rank writes what it saw to JSON; the test checks that the ranks
got disjoint shards covering the training set, different and reproducible per-rank random streams, identical
(synchronised) histories, and validation / test metrics and predictions equal to those of one process on data
sets whose size is not a multiple of 2 (so the ``DistributedSampler`` pads the shards with a repeated sample).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from ddp_nets import TinySNN
from hydra import compose, initialize_config_dir
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.utilities import rank_zero_only
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DistributedSampler, SequentialSampler

from spaic_train.cli import CONFIG_DIR, fit_kwargs, resolve_devices
from spaic_train.config import register_configs
from spaic_train.training import SNNModule, evaluate, fit, predict
from spaic_train.training.distributed import unpadded_shard_length
from spaic_train.training.metrics import accuracy
from spaic_train.training.resume import ResumableRandomSampler

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import torch
    import lightning.pytorch as pl
    from torch import nn
    from sklearn.datasets import load_digits
    from ddp_nets import TinySNN
    from spaic_train.training import SNNModule, evaluate, fit, predict
    from spaic_train.training.metrics import accuracy

    OUT = sys.argv[1]
    STRATEGY = sys.argv[2]


    class Record(pl.Callback):
        def __init__(self, index):
            self.index, self.seen, self.draws = index, [], []

        def on_train_epoch_start(self, trainer, pl_module):
            self.draws.append(torch.rand(3).tolist())  # after the per-rank reseed of on_fit_start

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 0:
                self.seen += [self.index[r.numpy().tobytes()] for r in batch[0]]

        def on_fit_end(self, trainer, pl_module):
            with open(os.path.join(OUT, f"rank{trainer.global_rank}.json"), "w") as fh:
                json.dump({"seen": self.seen, "draws": self.draws, "world": trainer.world_size}, fh)


    def main():
        d = load_digits()
        x = (d.data / 16.0).astype(np.float32)
        y = d.target.astype(np.int64)
        # 640 train, 161 validation, 301 test: odd sizes, so each process's shard of val/test gets padded
        xtr, ytr, xva, yva, xte, yte = x[:640], y[:640], x[640:801], y[640:801], x[801:1102], y[801:1102]
        index = {row.tobytes(): i for i, row in enumerate(xtr)}
        torch.manual_seed(0)
        module = SNNModule(TinySNN(), loss="ce_count", lr=0.05)
        rec = Record(index)
        ddp = dict(devices=2, accelerator="cpu", strategy=STRATEGY)
        h = fit(module, xtr, ytr, epochs=3, batch_size=32, validation_data=(xva, yva), seed=0, logger=False,
                enable_progress_bar=False, callbacks=[rec], **ddp)
        with torch.no_grad():
            direct = accuracy(module.network(torch.from_numpy(xva)), torch.from_numpy(yva))
            # weights on a 2^-6 grid: with inputs on a 2^-4 grid every membrane potential is exact in float32,
            # whatever the batching, so outputs of two and of one process can be compared bit for bit
            for p in module.network.parameters():
                p.copy_(torch.round(p * 64) / 64)
        # batch size 50: the 151-sample shards end in a 1-sample batch, all padding on rank 1
        test = evaluate(module, xte, yte, batch_size=50, **ddp)
        pred = predict(module, xte, batch_size=32, **ddp)
        order = predict(SNNModule(nn.Identity()), xte, batch_size=32, **ddp)
        rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.save({"weights": module.network.state_dict(), "pred": pred, "order": order},
                   os.path.join(OUT, f"out{rank}.pt"))
        with open(os.path.join(OUT, f"history{rank}.json"), "w") as fh:
            json.dump({"history": h.history, "epoch": h.epoch, "direct_val_accuracy": float(direct),
                       "world": h.params["world_size"], "test": test}, fh)


    if __name__ == "__main__":
        main()
    """
)


def _clean_env(**extra: str) -> dict:
    """The environment of a fresh launch: this repo and tests/ importable, no inherited ranks, addresses or
    cluster variables, one thread per process (equal float reduction order in every run)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_RANK", "RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                        "CUDA_VISIBLE_DEVICES", "PL_GLOBAL_SEED")
           and not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(ROOT), str(TESTS)) if p)
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _run(tmp_path: Path, strategy: str) -> None:
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), strategy], env=_clean_env(),
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def _test_split():
    d = load_digits()
    return torch.tensor(d.data[801:1102] / 16.0, dtype=torch.float32), torch.tensor(d.target[801:1102])


@pytest.mark.parametrize("shuffle, drop_last", [(False, False), (True, False), (False, True)])
def test_unpadded_shard_length_counts_each_sample_once(shuffle, drop_last):
    """The leading unpadded_shard_length(s) samples of every shard of torch's DistributedSampler together hold
    each sample at most once, and all of them unless drop_last drops the tail."""
    for n in range(1, 14):
        for world in range(1, 5):
            samplers = [DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=shuffle, seed=3,
                                           drop_last=drop_last) for r in range(world)]
            kept = [i for s in samplers for i in list(s)[:unpadded_shard_length(s)]]
            assert len(kept) == len(set(kept))
            assert len(kept) == (n // world * world if drop_last else n), (n, world)
    assert unpadded_shard_length(SequentialSampler(range(5))) is None


def test_resumable_sampler_shards_its_one_process_order():
    """Under DDP the training sampler deals out the one-process permutation of the epoch like torch's
    DistributedSampler (padded with its start), and skip() drops the start of the process's own shard."""
    data = range(11)
    whole = ResumableRandomSampler(data, seed=7)
    whole.set_epoch(2)
    order = list(whole)
    assert sorted(order) == list(range(11))
    padded = order + order[:1]
    for rank in range(2):
        shard = ResumableRandomSampler(data, seed=7)
        shard.set_shard(2, rank)
        shard.set_epoch(2)
        assert len(shard) == 6 and list(shard) == padded[rank::2]
        shard.skip(4)
        assert list(shard) == padded[rank::2][4:]
        assert list(shard) == padded[rank::2]  # the skip applies to one pass only
        assert unpadded_shard_length(shard) == (6 if rank == 0 else 5)


def test_ddp_two_cpu_processes(tmp_path):
    _run(tmp_path, "ddp")
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    # the training sampler shards itself: disjoint halves covering the 640 training samples
    assert len(r0["seen"]) == len(r1["seen"]) == 320
    assert not set(r0["seen"]) & set(r1["seen"])
    assert set(r0["seen"]) | set(r1["seen"]) == set(range(640))
    # per-rank RNG streams differ (Poisson encoders / dropout) and are reproducible: rank r's stream is
    # torch.manual_seed(seed + r), drawn from on_fit_start on
    for rank, r in enumerate((r0, r1)):
        assert r["draws"][0] == torch.rand(3, generator=torch.Generator().manual_seed(0 + rank)).tolist()
    h0 = json.loads((tmp_path / "history0.json").read_text())
    h1 = json.loads((tmp_path / "history1.json").read_text())
    assert h0["world"] == 2
    assert h0["epoch"] == [0, 1, 2]
    assert set(h0["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 3 for v in h0["history"].values())
    assert h0["history"] == h1["history"]  # metrics are synchronised across processes
    assert h0["history"]["val_accuracy"][-1] > 0.5  # chance: 0.1
    # the logged epoch accuracy is that of the 161 validation samples, each counted once (the sampler repeats one
    # to make two shards of 81); 1e-6: per-batch means are summed in another order than one process would
    assert h0["history"]["val_accuracy"][-1] == pytest.approx(h0["direct_val_accuracy"], abs=1e-6)

    # evaluate / predict on 301 test samples: two processes give what one gives
    out0 = torch.load(tmp_path / "out0.pt", weights_only=True)
    out1 = torch.load(tmp_path / "out1.pt", weights_only=True)
    x, y = _test_split()
    assert torch.equal(out0["order"], x) and torch.equal(out1["order"], x)  # every sample once, in dataset order
    net = TinySNN()
    net.load_state_dict(out0["weights"])
    module = SNNModule(net, loss="ce_count")
    single = evaluate(module, x, y, batch_size=50, accelerator="cpu", devices=1)
    pred = predict(module, x, accelerator="cpu", devices=1)
    assert pred.shape == (301, 10)
    assert torch.equal(out0["pred"], pred) and torch.equal(out1["pred"], pred)  # exact potentials (2^-6 grid)
    with torch.no_grad():
        direct_acc = float(accuracy(net(x), y))
        direct_loss = float(module.loss_fn(net(x), y))
    assert single["accuracy"] == pytest.approx(direct_acc, abs=1e-6)
    for h in (h0, h1):
        # sums of per-batch means in another order than one process: float32 rounding only
        assert h["test"]["accuracy"] == pytest.approx(single["accuracy"], abs=1e-6)
        assert h["test"]["loss"] == pytest.approx(single["loss"], rel=1e-6)
        assert h["test"]["loss"] == pytest.approx(direct_loss, rel=1e-6)


def test_ddp_spawn_returns_history_and_weights():
    """Under ``ddp_spawn`` the fit runs in a child process (one, to keep the test short): History and trained
    weights come back to the caller."""
    d = load_digits()
    x, y = (d.data[:256] / 16.0).astype(np.float32), d.target[:256]
    torch.manual_seed(0)
    net = nn.Linear(64, 10)
    before = net.weight.detach().clone()
    h = fit(SNNModule(net, loss="ce", lr=0.1), x, y, epochs=2, batch_size=32, validation_split=0.25, devices=1,
            accelerator="cpu", strategy="ddp_spawn", logger=False, enable_progress_bar=False)
    assert h.params["world_size"] == 1
    assert h.epoch == [0, 1] and set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 2 for v in h.history.values())
    assert h.history["val_accuracy"][-1] > 0.3
    assert not torch.equal(before, net.weight.detach())


# ------------------------------------------------------------------------------------------------ many machines
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _trainer_from_config(*overrides: str) -> pl.Trainer:
    """The ``lightning.Trainer`` that ``python train.py <overrides>`` would build (hardware options only)."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    kw = fit_kwargs(cfg, Path("unused"))
    return pl.Trainer(accelerator=kw["accelerator"], devices=kw["devices"], num_nodes=kw["num_nodes"],
                      strategy=kw["strategy"], logger=False, enable_checkpointing=False)


@pytest.fixture
def keep_rank_zero(monkeypatch):
    """A Trainer built under a faked cluster sets Lightning's global rank_zero_only.rank: put it back after."""
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    for key in [k for k in os.environ if k.startswith(("SLURM_", "TORCHELASTIC_"))] + ["RANK", "LOCAL_RANK"]:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_torchrun_environment_is_used(keep_rank_zero):
    """What ``torchrun --nnodes=2 --nproc_per_node=1`` sets on the second machine."""
    for key, value in dict(TORCHELASTIC_RUN_ID="job", RANK="1", LOCAL_RANK="0", GROUP_RANK="1", WORLD_SIZE="2",
                           LOCAL_WORLD_SIZE="1", MASTER_ADDR="10.0.0.1", MASTER_PORT="29500").items():
        keep_rank_zero.setenv(key, value)
    trainer = _trainer_from_config("trainer.num_nodes=2", "trainer.devices=1")
    env = trainer.strategy.cluster_environment
    assert isinstance(trainer.strategy, DDPStrategy) and isinstance(env, TorchElasticEnvironment)
    assert (trainer.world_size, trainer.global_rank, trainer.node_rank, trainer.local_rank) == (2, 1, 1, 0)
    assert (env.main_address, env.main_port) == ("10.0.0.1", 29500)


def test_slurm_config_follows_the_allocation(keep_rank_zero):
    """``trainer=slurm`` in task 3 of ``sbatch --nodes=2 --ntasks-per-node=2``: 2 nodes x 2 processes, ranks
    and main node from SLURM's variables."""
    for key, value in dict(SLURM_NTASKS="4", SLURM_JOB_NUM_NODES="2", SLURM_NTASKS_PER_NODE="2", SLURM_PROCID="3",
                           SLURM_LOCALID="1", SLURM_NODEID="1", SLURM_NODELIST="node[07-08]", SLURM_JOB_ID="4242",
                           SLURM_JOB_NAME="train").items():
        keep_rank_zero.setenv(key, value)
    trainer = _trainer_from_config("trainer=slurm")
    env = trainer.strategy.cluster_environment
    assert isinstance(trainer.strategy, DDPStrategy) and isinstance(env, SLURMEnvironment)
    assert (trainer.num_nodes, trainer.num_devices) == (2, 2)
    assert (trainer.world_size, trainer.global_rank, trainer.node_rank, trainer.local_rank) == (4, 3, 1, 1)
    assert env.main_address == "node07"
    env.validate_settings(num_devices=2, num_nodes=2)  # Lightning's check: ntasks == nodes x devices


def test_ddp_config_on_cpu_starts_one_process_per_core():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert resolve_devices(-1, "cpu") == cores
    assert resolve_devices("-1", "cpu") == cores
    assert resolve_devices(-1, "gpu") == -1  # every visible GPU: Lightning's own meaning
    assert resolve_devices(2, "cpu") == 2


@pytest.mark.slow
def test_two_nodes_by_torchrun_equal_two_processes_on_one_node(tmp_path):
    """``torchrun`` on two "machines" (two launches on localhost, node ranks 0 and 1, gloo) trains the default recipe
    exactly like Lightning's own 2-process launch on one machine: same shards, seeds and all-reduces, one thread
    per process, so equal weights bit for bit and equal metrics.  Only rank 0 prints and writes outputs."""
    short = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false"]
    one = subprocess.run([sys.executable, str(ROOT / "train.py"), "trainer=ddp", "trainer.devices=2", *short,
                          f"hydra.run.dir={tmp_path / 'one'}"], cwd=ROOT, env=_clean_env(), capture_output=True,
                         text=True, timeout=900)
    assert one.returncode == 0, one.stderr[-5000:]
    port = _free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={rank}",
                               "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}",
                               str(ROOT / "train.py"), "trainer.num_nodes=2", "trainer.devices=1", *short,
                               f"hydra.run.dir={tmp_path / f'node{rank}'}"],
                              cwd=ROOT, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outs = [node.communicate(timeout=900) for node in nodes]
    for node, (_, err) in zip(nodes, outs):
        assert node.returncode == 0, err[-5000:]

    # printed once: the summary and the final line come from global rank 0 only
    assert one.stdout.count('Model: "digits_fc"') == 1 and one.stdout.count("[digits_snn]") == 1
    assert outs[0][0].count('Model: "digits_fc"') == 1 and outs[0][0].count("[digits_snn]") == 1
    assert "Model:" not in outs[1][0] and "[digits_snn]" not in outs[1][0]
    # rank 0 writes model.pt, metrics.json, TensorBoard (scalars and spike rasters) and checkpoints
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    for name in ("model.pt", "metrics.json", "tb", "checkpoints/last.ckpt"):
        assert (node0 / name).exists() and not (node1 / name).exists(), name
    assert list((node0 / "tb").glob("events.out.tfevents.*"))

    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((node0 / "metrics.json").read_text())
    for key in ("fit_seconds", "output_dir"):
        a.pop(key), b.pop(key)
    assert a == b and {"test_accuracy", "val_accuracy", "loss"} <= set(a)
    wa = torch.load(tmp_path / "one" / "model.pt", weights_only=False)["state_dict"]
    wb = torch.load(node0 / "model.pt", weights_only=False)["state_dict"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


MIXED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    import spaic_train as st
    from spaic_train.keras.layers import Full, Input

    OUT = sys.argv[1]
    d = load_digits()
    x, y = (d.data[:301] / 16.0).astype(np.float32), d.target[:301].astype(np.int64)  # odd: padded DDP shards
    torch.manual_seed(0)
    inp = Input((64,))
    model = st.keras.Model(inp, Full(10, name="out")(Full(32, name="h")(inp)), time_steps=4)
    model.compile(optimizer="adam", lr=1e-2, loss="ce_count")
    one = dict(batch_size=50, enable_progress_bar=False)
    ddp = dict(one, devices=2, accelerator="cpu", strategy="ddp")
    fit = dict(epochs=1, validation_data=(x, y), logger=False, seed=0)
    res = {"fit": model.fit(x, y, **fit, **one).history}
    res["eval"] = model.evaluate(x, y, **one)                 # metric states made under inference_mode ...
    res["eval_ddp"] = model.evaluate(x, y, **ddp)             # ... updated under gloo's no_grad
    res["fit_ddp"] = model.fit(x, y, **fit, **ddp).history
    with torch.no_grad():  # weights on a 2^-6 grid, inputs on 2^-4: every sum is exact in any order
        for p in model.parameters():
            p.copy_(torch.round(p * 64) / 64)
    res["eval_after"] = model.evaluate(x, y, **one)
    res["eval_ddp_after"] = model.evaluate(x, y, **ddp)
    rank = int(os.environ.get("LOCAL_RANK", 0))
    torch.save({"pred_ddp": model.predict(x, **ddp), "pred": model.predict(x, **one)},
               os.path.join(OUT, f"pred{rank}.pt"))
    with open(os.path.join(OUT, f"mixed{rank}.json"), "w") as fh:
        json.dump(res, fh)
    """
)


def test_evaluation_metrics_made_under_inference_mode_update_under_no_grad():
    """What DDP on CPU does to a module evaluated before in one process: Lightning evaluates under no_grad with
    gloo, under inference_mode otherwise; the metric states the first evaluation made (inference tensors) must
    take the second one's updates (issue 25, item 11), and both give the same numbers."""
    x, y = _test_split()
    torch.manual_seed(0)
    module = SNNModule(TinySNN(), loss="ce_count")
    first = evaluate(module, x, y, batch_size=50, accelerator="cpu")
    again = evaluate(module, x, y, batch_size=50, accelerator="cpu", inference_mode=False)
    assert again == first and 0.1 < first["accuracy"] < 1.0


@pytest.mark.slow
def test_fit_evaluate_predict_with_and_without_ddp_in_one_script(tmp_path):
    """One script alternates one-process and two-process (gloo) fit / evaluate / predict (issue 25, item 11: the
    second evaluate used to fail with "Inplace update to inference tensor outside InferenceMode"): every call
    runs, and the two-process results equal the one-process ones on the same weights."""
    script = tmp_path / "mixed.py"
    script.write_text(MIXED_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=_clean_env(), cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "terminate called" not in proc.stderr
    r0, r1 = (json.loads((tmp_path / f"mixed{r}.json").read_text()) for r in (0, 1))
    for key in ("eval_ddp", "fit_ddp", "eval_ddp_after"):
        assert r0[key] == r1[key], key  # synchronised across the processes
    assert r0["fit"]["val_accuracy"][0] == pytest.approx(r0["eval"]["accuracy"])  # fit's last val = evaluate
    for a, b in (("eval", "eval_ddp"), ("eval_after", "eval_ddp_after")):
        # each of the 301 samples counted once in both; only the order of the float sums differs
        assert r0[b] == pytest.approx(r0[a], abs=1e-6), (a, b)
    assert r0["eval_after"]["accuracy"] > 0.3  # trained (chance: 0.1), so the comparison is not of silent outputs
    p0, p1 = (torch.load(tmp_path / f"pred{r}.pt", weights_only=True) for r in (0, 1))
    assert p0["pred"].shape == (301, 10) and torch.equal(p0["pred_ddp"], p0["pred"])
    assert torch.equal(p1["pred_ddp"], p0["pred"])


TEARDOWN_SCRIPT = textwrap.dedent(
    """
    import atexit, os, sys
    import torch.distributed as dist
    from spaic_train.training.distributed import ProcessGroupTeardown

    # registered first, so it runs last (atexit is last in, first out): what the process group is at the very end
    atexit.register(lambda: print("initialized at exit:", dist.is_initialized(), flush=True))
    dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=0, world_size=1)
    for _ in range(2):  # a second trainer of the same script registers nothing more
        ProcessGroupTeardown().setup(None, None, "fit")
    print("registered:", ProcessGroupTeardown._registered, flush=True)
    """
)


def test_process_group_is_destroyed_before_the_interpreter_shuts_down(tmp_path):
    """Lightning leaves the gloo process group alive after a run; freeing it during interpreter finalisation can
    abort the process after a successful run (exit -6).  ProcessGroupTeardown destroys it in an atexit handler."""
    script = tmp_path / "teardown.py"
    script.write_text(TEARDOWN_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "store")], env=_clean_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:2] == ["registered: True", "initialized at exit: False"]
