"""Multi-process (DDP, gloo, 2 CPU processes) training through ``spaic_train.training.fit``.

``strategy='ddp'`` relaunches the calling script for rank 1, so the fit runs in a script written to ``tmp_path``
and started with ``python`` in a subprocess.  Each rank writes what it saw to JSON; the test checks that
the ranks got disjoint shards covering the training set, different per-rank random streams, identical
(synchronised) histories, validation accuracy above chance and equal to a direct computation with the final
weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from spaic_train.training import SNNModule, fit

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import torch
    import lightning.pytorch as pl
    from torch import nn
    from sklearn.datasets import load_digits
    from spaic_train.surrogate import get_surrogate, spike
    from spaic_train.training import SNNModule, fit
    from spaic_train.training.metrics import accuracy

    OUT = sys.argv[1]
    STRATEGY = sys.argv[2]


    SURROGATE = get_surrogate("fast_sigmoid", alpha=3.0)


    class TinySNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            cur = self.fc(x.flatten(1))
            v = torch.zeros_like(cur)
            n = torch.zeros_like(cur)
            for _ in range(4):
                v = 0.5 * v + cur
                s = spike(v - 1.0, SURROGATE)
                v = v - s
                n = n + s
            return n


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
        _, first = np.unique(x, axis=0, return_index=True)
        keep = np.sort(first)[:800]
        x, y = x[keep], d.target[keep].astype(np.int64)
        xtr, ytr, xva, yva = x[:640], y[:640], x[640:], y[640:]
        index = {row.tobytes(): i for i, row in enumerate(xtr)}
        torch.manual_seed(0)
        module = SNNModule(TinySNN(), loss="ce_count", lr=0.05)
        rec = Record(index)
        h = fit(module, xtr, ytr, epochs=3, batch_size=32, validation_data=(xva, yva), devices=2,
                accelerator="cpu", strategy=STRATEGY, seed=0, logger=False, enable_progress_bar=False,
                callbacks=[rec])
        with torch.no_grad():
            direct = accuracy(module.network(torch.from_numpy(xva)), torch.from_numpy(yva))
        rank = int(os.environ.get("LOCAL_RANK", 0))
        with open(os.path.join(OUT, f"history{rank}.json"), "w") as fh:
            json.dump({"history": h.history, "epoch": h.epoch, "direct_val_accuracy": float(direct),
                       "world": h.params["world_size"]}, fh)


    if __name__ == "__main__":
        main()
    """
)


def _run(tmp_path: Path, strategy: str) -> None:
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(ROOT)) if p)
    env.pop("LOCAL_RANK", None)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), strategy], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_ddp_two_cpu_processes(tmp_path):
    _run(tmp_path, "ddp")
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["world"] == r1["world"] == 2
    # DistributedSampler: disjoint halves covering the 640 training samples
    assert len(r0["seen"]) == len(r1["seen"]) == 320
    assert not set(r0["seen"]) & set(r1["seen"])
    assert set(r0["seen"]) | set(r1["seen"]) == set(range(640))
    # per-rank RNG streams differ (Poisson encoders / dropout), and are reseeded deterministically
    assert r0["draws"][0] != r1["draws"][0]
    h0 = json.loads((tmp_path / "history0.json").read_text())
    h1 = json.loads((tmp_path / "history1.json").read_text())
    assert h0["world"] == 2
    assert h0["epoch"] == [0, 1, 2]
    assert set(h0["history"]) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert all(len(v) == 3 for v in h0["history"].values())
    assert h0["history"] == h1["history"]  # metrics are synchronised across processes
    assert h0["history"]["val_accuracy"][-1] > 0.5  # chance: 0.1
    # the logged epoch accuracy is the exact accuracy over the whole validation set (both shards)
    assert h0["history"]["val_accuracy"][-1] == pytest.approx(h0["direct_val_accuracy"], abs=1e-6)


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
