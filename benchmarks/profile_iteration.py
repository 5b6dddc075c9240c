"""Where one spaic_train training iteration of a ``benchmarks/run.py`` workload spends its time (``torch.profiler``).

    python benchmarks/profile_iteration.py conv --threads 1

Builds the workload exactly as ``run.py --worker spaic_train <workload>`` does (same sizes, weights and data), runs
``--warmup`` untimed iterations, times ``--iters`` more (median wall time printed), then profiles ``--profiled``
iterations and prints the operators by self CPU time (``--by-shape``: split by input shapes, e.g. to tell the
convolutions apart).  A tool for finding what to speed up; speed claims come from ``run.py``'s interleaved runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workload", help="a run.py workload with an optimizer step (fc, conv, conv-t16, ...)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5, help="timed iterations (median printed)")
    ap.add_argument("--profiled", type=int, default=2, help="profiled iterations")
    ap.add_argument("--rows", type=int, default=15)
    ap.add_argument("--by-shape", action="store_true", help="one row per operator and input shapes")
    ap.add_argument("--quick", action="store_true", help="the workload's tiny sizes (smoke test)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import fw_spaic
    import torch
    import workloads as W
    from torch.profiler import ProfilerActivity, profile

    if not W.uses_optimizer(args.workload):
        ap.error(f"workload {args.workload!r} has no optimizer step; pick one of fc, conv, conv-t16, conv-t64")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = W.spec_for(args.workload, args.quick)
    params = W.make_params(args.workload, spec)
    x, y = W.make_data(args.workload, spec)
    model = fw_spaic.build(args.workload, spec, params)
    x = model.prepare_input(x) if hasattr(model, "prepare_input") else x
    step = W.training_step(args.workload, model, x, y)
    times = W.timed(step, args.warmup, args.iters)
    print(f"{args.workload}: median {statistics.median(times):.1f} ms per iteration over {args.iters} "
          f"({torch.get_num_threads()} threads)")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.by_shape) as prof:
        for _ in range(args.profiled):
            step()
    print(f"operators over {args.profiled} profiled iterations (self CPU time):")
    print(prof.key_averages(group_by_input_shape=args.by_shape).table(sort_by="self_cpu_time_total",
                                                                      row_limit=args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
