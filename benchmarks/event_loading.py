"""Data-loading time per epoch vs model time on N-MNIST (issue 21): the ``nmnist`` datamodule (tonic's reader)
without and with the frame cache, and the nmnist recipe's model (forward + backward) on the same batches.

    python benchmarks/event_loading.py --data ../shared/data [--repeats 3] [--threads 2]

Prints seconds per training epoch (900 recordings, batch 32, T = 35 × 10 ms) for: reading and binning the files
every epoch (``data.cache=false``), building the frame cache once (train + test), an epoch from the cache, and the
model.  Runs are interleaved ``--repeats`` times; the median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def epoch_seconds(loader) -> float:
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data", help="directory holding nmnist-small/")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from spaic_train.cli import build_model
    from spaic_train.config import register_configs
    from spaic_train.data import build_datamodule
    from spaic_train.training import get_loss

    root = str(Path(args.data).expanduser() / "nmnist-small" / "NMNISTsmall")
    kw = {"root": root, "batch_size": 32, "time_steps": 35, "bin_ms": 10.0, "clamp": True, "seed": 0}
    register_configs()
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["recipe=nmnist"])
    times: dict[str, list[float]] = {k: [] for k in ("no cache (files every epoch)", "cache build (once)",
                                                      "from the cache", "model fwd+bwd")}
    for _ in range(args.repeats):
        times["no cache (files every epoch)"].append(
            epoch_seconds(build_datamodule("nmnist", cache=False, **kw).train_dataloader()))
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            dm = build_datamodule("nmnist", cache_dir=cache, **kw)
            dm.setup()
            times["cache build (once)"].append(time.perf_counter() - t0)
            times["from the cache"].append(epoch_seconds(dm.train_dataloader()))
            batches = list(dm.train_dataloader())
        model = build_model(cfg.model, dm.input_shape)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = get_loss(cfg.model.loss, **cfg.model.loss_kwargs)
        t0 = time.perf_counter()
        for x, y in batches:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        times["model fwd+bwd"].append(time.perf_counter() - t0)
    model_s = statistics.median(times["model fwd+bwd"])
    print(f"N-MNIST small, 900 training recordings per epoch, batch 32, T=35, {args.threads} threads, "
          f"median of {args.repeats}")
    for k, v in times.items():
        med = statistics.median(v)
        print(f"  {k:28s} {med:7.2f} s   ({med / model_s:5.2f} x model time)")


if __name__ == "__main__":
    main()
