"""How spaic_train's peak training memory grows with the number of time steps T.

    python benchmarks/memory_scaling.py [--T 4,8,16,32,64] [--batch 16] [--width 64] [--threads 2] [--quick]
    python benchmarks/memory_scaling.py --saved-bytes --T 4,16 [--batch 16]   # bytes kept for backward, bits vs float

Runs the ``conv`` workload's network (benchmarks/workloads.py: conv-BN-LIF x3 with max pools, CIFAR-shaped,
first width ``--width``) for one training iteration per T, each in a fresh process, twice: plain BPTT and
``checkpoint_steps = round(sqrt(T))`` (checkpoint through time).  Memory = peak RSS during the timed iteration
minus the RSS before it (model built, compiled kernels loaded, one warm-up iteration at T=2 done): the training
memory that grows with T, without the fixed runtimes, so that the fit below is about T (benchmarks/run.py counts
the runtimes too).  Prints the peaks and the exponent ``p`` of the least-squares fit ``peak ∝ T^p``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TAG = "SCALING-RESULT "


def _worker(T: int, ckpt: int, batch: int, width: int, threads: int) -> dict:
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    import torch
    import workloads as W
    from fw_spaic import build_network
    from machine import peak_rss_bytes, reset_peak_rss, rss_bytes

    import spaic_train as spaic
    from spaic_train.neurons import load_compiled_kernels

    torch.set_num_threads(threads)
    spec = dict(W.FULL["conv"], T=T, B=batch, C=(width, 2 * width, 2 * width))
    params = W.make_params("conv", spec)
    x, y = W.make_data("conv", spec)
    net = build_network(spaic, "conv", spec, params)
    net.checkpoint_steps = ckpt or None
    load_compiled_kernels("cpu")

    def iteration(steps):
        net.zero_grad(set_to_none=True)
        W.loss_fn("conv", net(x, time_steps=steps), y).backward()

    # warm-up at T=2: lazy imports and one-off allocations (the checkpoint machinery's ~150 MB of code) without
    # leaving T-sized blocks in the allocator
    iteration(2)
    net.zero_grad(set_to_none=True)
    rss0 = rss_bytes()
    reset_peak_rss()
    iteration(T)
    return {"T": T, "checkpoint_steps": ckpt, "peak_mb": (peak_rss_bytes() - rss0) / 2**20}


def saved_mb(T: int, batch: int, width: int, compact: bool) -> float:
    """MB autograd keeps for backward (distinct storages) after the forward of the conv net, with the spike inputs
    of the weight / pooling ops stored as bits (``compact``) or as float32 (the plain ops)."""
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    import torch
    import workloads as W
    from fw_spaic import build_network

    import spaic_train as spaic
    from spaic_train.neurons.kernels import spike_bits

    spec = dict(W.FULL["conv"], T=T, B=batch, C=(width, 2 * width, 2 * width))
    net = build_network(spaic, "conv", spec, W.make_params("conv", spec))
    x, y = W.make_data("conv", spec)
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    previous, spike_bits.COMPACT_SPIKES = spike_bits.COMPACT_SPIKES, compact
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            W.loss_fn("conv", net(x, time_steps=T), y)
    finally:
        spike_bits.COMPACT_SPIKES = previous
    return sum(storages.values()) / 2**20


def fit_exponent(Ts, peaks) -> float:
    """Least-squares slope of log(peak) against log(T)."""
    lx = [math.log(t) for t in Ts]
    ly = [math.log(max(p, 1e-9)) for p in peaks]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", default="4,8,16,32,64")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="T = 4, 8, 16, batch 2, width 8 (smoke test)")
    ap.add_argument("--saved-bytes", action="store_true",
                    help="instead: MB saved for backward at each T with spikes stored as bits vs as float32")
    ap.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.T, args.batch, args.width = "4,8,16", 2, 8
    if args.saved_bytes:
        for T in [int(t) for t in args.T.split(",")]:
            bits, plain = (saved_mb(T, args.batch, args.width, c) for c in (True, False))
            print(f"T={T:<3d} saved for backward: {bits:9.1f} MB with spikes as bits, {plain:9.1f} MB as float32 "
                  f"({bits / plain:.2f}x)", flush=True)
        return 0
    if args.worker:
        print(TAG + json.dumps(_worker(*args.worker, args.batch, args.width, args.threads)), flush=True)
        return 0
    Ts = [int(t) for t in args.T.split(",")]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    rows = {}
    print(f"conv net, width {args.width}, batch {args.batch}: peak MB of one training iteration "
          f"(peak RSS minus RSS before it)", flush=True)
    for label in ("plain", "sqrt"):
        peaks = []
        for T in Ts:
            ckpt = 0 if label == "plain" else max(1, round(math.sqrt(T)))
            cmd = [sys.executable, __file__, "--worker", str(T), str(ckpt), "--batch", str(args.batch),
                   "--width", str(args.width), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(HERE.parent))
            res = next((json.loads(line[len(TAG):]) for line in out.stdout.splitlines() if line.startswith(TAG)),
                       None)
            if res is None:
                print(f"  T={T} {label}: error {out.stderr.strip().splitlines()[-1:]}", flush=True)
                return 1
            peaks.append(res["peak_mb"])
            print(f"  T={T:<3d} {'checkpoint_steps=' + str(ckpt) if ckpt else 'plain BPTT':20s} "
                  f"{res['peak_mb']:8.1f} MB", flush=True)
        rows[label] = peaks
        print(f"  {label}: exponent of the fit peak ~ T^p over T = {args.T}: p = {fit_exponent(Ts, peaks):.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
