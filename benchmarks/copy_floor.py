"""The ``lif`` workload against the memory-bandwidth floor, in one process.

A fused LIF forward + backward must at least read the input currents, write the spikes, read the
incoming gradient and write the input gradient — about 3 copies' worth of the ``[T, B, N]`` float32
tensor.  This script times, interleaved in the same process, ``3 × dst.copy_(src)`` into preallocated
tensors of that size and one spaic_train ``lif`` iteration (forward + backward of the spike sum, the
``lif`` workload of ``run.py``), and prints the ratio.

    python benchmarks/copy_floor.py [--threads 2] [--iters 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from workloads import ATAN_ALPHA, FULL, TAU, V_RESET, V_TH

import spaic_train as spaic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    T, B, N = FULL["lif"]["T"], FULL["lif"]["B"], FULL["lif"]["N"]
    gen = torch.Generator().manual_seed(0)
    current = (torch.randn(T, B, N, generator=gen) * 0.6 + 0.35).requires_grad_(True)
    group = spaic.NeuronGroup(N, model="lif", tau=TAU, v_th=V_TH, v_reset=V_RESET, reset="hard",
                              surrogate="atan", surrogate_alpha=ATAN_ALPHA)
    src = torch.rand(T, B, N)
    dst = [torch.empty_like(src) for _ in range(3)]

    def lif_iteration():
        current.grad = None
        spikes, _, _ = group.neuron.run_sequence(current, group.neuron.initial_state(current[0]))
        spikes.sum().backward()

    def copies():
        for d in dst:
            d.copy_(src)

    for fn in (lif_iteration, copies):  # warm-up
        fn()
    times = {"lif": [], "copy": []}
    for _ in range(args.iters):
        for name, fn in (("lif", lif_iteration), ("copy", copies)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    lif_ms = statistics.median(times["lif"]) * 1e3
    copy_ms = statistics.median(times["copy"]) * 1e3
    gb = 3 * 2 * src.numel() * src.element_size() / 1e9
    print(f"lif T={T} B={B} N={N}, {args.threads} thread(s), median of {args.iters}")
    print(f"  3 copies of the {src.numel() * 4 / 1e6:.0f} MB input ({gb:.2f} GB moved): {copy_ms:.1f} ms "
          f"({gb / copy_ms * 1e3:.1f} GB/s)")
    print(f"  spaic_train lif forward + backward: {lif_ms:.1f} ms = {lif_ms / copy_ms:.2f}x the copy floor")


if __name__ == "__main__":
    main()
