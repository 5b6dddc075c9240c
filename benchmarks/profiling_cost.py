"""Cost of counting SOPs during training (``spaic_train.profiling``) on the ``fc`` and ``conv`` workloads.

    python benchmarks/profiling_cost.py [--workloads fc,conv] [--iters 10] [--warmup 2] [--threads 2] [--quick]
    python benchmarks/run.py --profiling ...        # the same, after run.py's own timings

One process per workload; training iterations (forward over all T, loss, backward, Adam) alternate between
*off* (the plain step) and *on* (the step inside ``network.record`` plus ``SpikeCounter.update`` on the recorded
spikes: what :class:`~spaic_train.profiling.EnergyMonitor` does for every training batch).  Reports the median of
each and on/off, in wall time and in CPU time of the process (``time.process_time``: steadier on a loaded
machine, where small reductions wait for descheduled threads), and the CPU time of the counting alone
(``SpikeCounter.update``) as a share of a plain step's: on a shared machine the on/off difference of a few per cent
drowns in the noise of the steps, the counting's own time does not.  Off is the unchanged code path: nothing of the
profiler runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)


def measure(workload: str, iters: int, warmup: int, threads: int, quick: bool) -> dict:
    import fw_spaic
    import torch
    import workloads as W

    from spaic_train.profiling import SpikeCounter, recorded_vars

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = W.spec_for(workload, quick)
    model = fw_spaic.build(workload, spec, W.make_params(workload, spec))
    x, y = W.make_data(workload, spec)
    net = model.net
    counter = SpikeCounter(net)
    step = W.training_step(workload, model, x, y)

    count_cpu = []

    def counted_step():
        with net.record(recorded_vars(net)) as rec:
            step()
        c0 = time.process_time()
        counter.update(rec)
        count_cpu.append((time.process_time() - c0) * 1e3)

    for _ in range(warmup):
        step()
        counted_step()
    times = {k: [] for k in ("off", "on", "off_cpu", "on_cpu")}
    for _ in range(iters):
        for fn, key in ((step, "off"), (counted_step, "on")):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[key].append((time.perf_counter() - t0) * 1e3)
            times[key + "_cpu"].append((time.process_time() - c0) * 1e3)
    count_cpu = count_cpu[warmup:]
    med = {k: statistics.median(v) for k, v in times.items()}
    med["count_cpu"] = statistics.median(count_cpu)
    result = counter.result()
    return {"workload": workload, "spec": spec, "off_ms": med["off"], "on_ms": med["on"],
            "on_over_off": med["on"] / med["off"], "off_cpu_ms": med["off_cpu"], "on_cpu_ms": med["on_cpu"],
            "on_over_off_cpu": med["on_cpu"] / med["off_cpu"], "count_cpu_ms": med["count_cpu"],
            "count_over_step_cpu": med["count_cpu"] / med["off_cpu"], "sops_per_sample": result.sops,
            "macs_per_sample": result.macs, "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="fc,conv")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    rows = []
    for wl in [w.strip() for w in args.workloads.split(",") if w.strip()]:
        if wl not in ("fc", "conv"):
            ap.error(f"unknown workload {wl!r}; choose from fc, conv")
        r = measure(wl, args.iters, args.warmup, args.threads, args.quick)
        rows.append(r)
        print(f"counting cost {wl:5s} off {r['off_ms']:8.1f} ms/iter  on {r['on_ms']:8.1f} ms/iter  "
              f"on/off {r['on_over_off']:.3f} (CPU time {r['on_over_off_cpu']:.3f}; the counting alone "
              f"{r['count_over_step_cpu']:.1%} of a step's CPU time; {r['threads']} thread(s); "
              f"{r['sops_per_sample']:,.0f} SOPs + {r['macs_per_sample']:,.0f} MACs per sample)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
