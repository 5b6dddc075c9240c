"""Batch norm fused into the LIF kernel vs unfused (``SPAIC_TRAIN_FUSE_BN=0``) on the ``conv`` net (conv-BN-LIF x3).

    python benchmarks/fused_bn.py [--workloads conv,conv-t16] [--iters 6] [--rounds 2] [--threads 2] [--quick]

Three measurements per workload (benchmarks/workloads.py sizes; ``conv-t16`` is the conv net at T=16):

* peak memory of a training iteration, each mode in its own ``benchmarks/run.py --worker spaic_train`` process
  (peak RSS minus the RSS before ``import spaic_train``, as run.py counts it; load does not change memory), the
  processes interleaved over ``--rounds``;
* MB that autograd keeps for backward after the forward (distinct storages through ``saved_tensors_hooks``);
* time per training iteration, and of the batch norm + LIF layer alone (forward + backward, the net's widest layer),
  fused / unfused, **interleaved in one process** (the two modes alternate iteration by iteration, switched through
  ``dispatch.FUSE_BN``), so that a loaded machine slows both alike: the median of the per-pair ratios is the figure
  to read, not the milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TAG = "FUSED-BN-RESULT "


def _setup(workload: str, quick: bool, threads: int):
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    import torch
    import workloads as W
    from fw_spaic import build_network

    import spaic_train as spaic
    from spaic_train.neurons import load_compiled_kernels

    torch.set_num_threads(threads)
    spec = W.spec_for(workload, quick)
    net = build_network(spaic, "conv", spec, W.make_params(workload, spec))
    x, y = W.make_data(workload, spec)
    load_compiled_kernels("cpu")
    return torch, W, net, x, y, spec["T"]


def saved_mb(workload: str, quick: bool, threads: int) -> dict:
    """MB kept for backward after one forward, fused and unfused."""
    torch, W, net, x, y, T = _setup(workload, quick, threads)
    from spaic_train.neurons.kernels import dispatch

    out = {}
    for fuse in (True, False):
        storages = {}

        def pack(t, storages=storages):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        dispatch.FUSE_BN = fuse
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            W.loss_fn("conv", net(x, time_steps=T), y)
        out["fused" if fuse else "unfused"] = sum(storages.values()) / 2**20
    dispatch.FUSE_BN = True
    return out


def interleaved_times(workload: str, quick: bool, threads: int, iters: int) -> dict:
    """ms per training iteration (forward + backward + Adam), the two modes alternating."""
    torch, W, net, x, y, T = _setup(workload, quick, threads)
    from spaic_train.neurons.kernels import dispatch

    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    times = {True: [], False: []}
    for i in range(2 * (iters + 1)):
        fuse = i % 2 == 0
        dispatch.FUSE_BN = fuse
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        W.loss_fn("conv", net(x, time_steps=T), y).backward()
        opt.step()
        if i >= 2:  # the first pair warms up
            times[fuse].append((time.perf_counter() - t0) * 1e3)
    dispatch.FUSE_BN = True
    return _summary(times)


def layer_times(workload: str, quick: bool, threads: int, iters: int) -> dict:
    """ms of forward + backward of the batch norm + LIF layer alone (the net's widest: ``C[1]`` channels at full
    resolution, channels-last as the conv gives it), the two modes alternating."""
    torch, W, net, x, y, T = _setup(workload, quick, threads)
    from spaic_train.neurons.kernels import dispatch

    spec = W.spec_for(workload, quick)
    B, C, H = spec["B"], spec["C"][1], spec["H"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, H, H, C, generator=g).permute(0, 1, 4, 2, 3).requires_grad_()
    gO = torch.randn(T, B, H, H, C, generator=g).permute(0, 1, 4, 2, 3)
    norm, neuron = net.c2.trailing_norm, net.l2.neuron
    times = {True: [], False: []}
    for i in range(2 * (iters + 1)):
        fuse = i % 2 == 0
        dispatch.FUSE_BN = fuse
        t0 = time.perf_counter()
        O, _, _ = neuron.run_sequence_normed(x, norm)
        O.backward(gO)
        if i >= 2:
            times[fuse].append((time.perf_counter() - t0) * 1e3)
        x.grad = None
    dispatch.FUSE_BN = True
    return _summary(times)


def _summary(times: dict) -> dict:
    pairs = list(zip(times[True], times[False]))
    return {"fused_ms": statistics.median(times[True]), "unfused_ms": statistics.median(times[False]),
            "ratio": statistics.median(a / b for a, b in pairs), "pairs": len(pairs)}


def peak_mb(workload: str, fuse: bool, args) -> float:
    env = dict(os.environ, SPAIC_TRAIN_FUSE_BN="1" if fuse else "0", PYTHONWARNINGS="ignore")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, str(HERE / "run.py"), "--worker", "spaic_train", workload, "--iters", "1", "--warmup", "1",
           "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(HERE.parent))
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from run import RESULT_TAG

    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])["peak_delta_mb"]
    raise RuntimeError(f"run.py worker failed: {(proc.stderr or proc.stdout)[-800:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="conv,conv-t16")
    ap.add_argument("--iters", type=int, default=6, help="timed iterations per mode (interleaved)")
    ap.add_argument("--rounds", type=int, default=2, help="peak-memory processes per mode (interleaved)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        kind, workload = args.worker
        measure = {"saved": saved_mb, "times": interleaved_times, "layer": layer_times}[kind]
        res = measure(workload, args.quick, args.threads) if kind == "saved" else measure(
            workload, args.quick, args.threads, args.iters)
        print(TAG + json.dumps(res), flush=True)
        return 0
    for workload in [w.strip() for w in args.workloads.split(",") if w.strip()]:
        peaks = {True: [], False: []}
        for _ in range(args.rounds):
            for fuse in (True, False):
                peaks[fuse].append(peak_mb(workload, fuse, args))
        res = {}
        for kind in ("saved", "times", "layer"):
            cmd = [sys.executable, __file__, "--worker", kind, workload, "--iters", str(args.iters),
                   "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=str(HERE.parent),
                                 env=dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore"))
            line = next((s for s in out.stdout.splitlines() if s.startswith(TAG)), None)
            if line is None:
                print(f"{workload}: {kind} failed: {(out.stderr or out.stdout)[-800:]}", flush=True)
                return 1
            res[kind] = json.loads(line[len(TAG):])
        fp, up = max(peaks[True]), max(peaks[False])
        s, t, lay = res["saved"], res["times"], res["layer"]
        print(f"{workload}: peak memory fused {fp:.0f} MB, unfused {up:.0f} MB ({fp / up:.2f}x); saved for backward "
              f"{s['fused']:.1f} MB vs {s['unfused']:.1f} MB ({s['fused'] / s['unfused']:.2f}x); time fused/unfused "
              f"(median of {t['pairs']} interleaved pairs): training iteration {t['ratio']:.2f}x (medians "
              f"{t['fused_ms']:.0f} / {t['unfused_ms']:.0f} ms), batch norm + LIF layer alone {lay['ratio']:.2f}x "
              f"({lay['fused_ms']:.0f} / {lay['unfused_ms']:.0f} ms)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
