"""Loader benchmark: training images per second of the CIFAR-10 loader, JPEG vs decoded cache, by worker count.

    python benchmarks/loader.py [--data DIR] [--limit-per-class N] [--workers 0 1 2] [--rounds R] [--json FILE]
    python benchmarks/loader.py --quick          # seconds: 120 images, batch 16, one round (checks the script)

Configurations (all on the ``cifar10`` datamodule with ``format=folder``, the JPEG tars, batch 64):

* source ``jpeg`` (``data.decode_once=false``: every image decoded from its file every epoch) or ``decoded``
  (``data.decode_once=true``: the uint8 cache, decoded before timing);
* augmentation ``crop+flip`` (``cifar_spaic_ref``) or ``crop+flip+AA+cutout`` (``cifar_snn``, ``cifar_resnet19``:
  AutoAugment CIFAR-10 policy, Cutout 16);
* ``data.num_workers`` 0 (the training process loads), 1, 2.

Each measurement iterates a fresh training loader and times batches ``--skip`` to ``--skip + --batches`` (the
steady state: workers started and their prefetch queues full), → images/s.  With 0 workers the four loaders take
turns batch by batch (so a burst of load from other processes hits all of them alike), timed by the wall clock
and by this process's CPU time (images per CPU-second: what one process can do, whatever else the machine runs).
With workers each configuration is timed on its own, in a rotating order.  Everything is repeated ``--rounds``
times; the table gives the medians.  Targets (issue 26): decoded ≥ 2× JPEG with 0 workers, 2 workers ≥ 1.6× 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

AUGMENTS = {"crop+flip": dict(autoaugment=None, cutout=0),
            "crop+flip+AA+cutout": dict(autoaugment="cifar10", cutout=16)}
SOURCES = {"jpeg": False, "decoded": True}
QUICK = dict(limit_per_class=12, batch=16, batches=3, skip=1, rounds=1, workers=[0, 1])


def default_data() -> Path:
    """``$SPAIC_TRAIN_DATA/cifar10-jpeg``, else ``<repo>/../shared/data/cifar10-jpeg``."""
    env = os.environ.get("SPAIC_TRAIN_DATA")
    return Path(env) / "cifar10-jpeg" if env else ROOT.parent / "shared" / "data" / "cifar10-jpeg"


def cpu_info() -> dict:
    """CPU model, the SIMD flags that matter for decoding, usable cores and the load average."""
    fields = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    except (OSError, subprocess.SubprocessError):
        pass
    flags = [f for f in fields.get("Flags", "").split() if f.startswith(("avx", "sse4", "fma"))]
    return {"model": fields.get("Model name", platform.processor() or "unknown"), "flags": flags,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "loadavg": list(os.getloadavg())}


def make_datamodule(data: Path, source: str, augment: str, limit_per_class: int, batch: int, cache_dir):
    from spaic_train.data import CIFAR10DataModule

    dm = CIFAR10DataModule(root=str(data), format="folder", batch_size=batch, limit_per_class=limit_per_class,
                           decode_once=SOURCES[source], cache_dir=cache_dir, augment=True, **AUGMENTS[augment])
    dm.setup()  # extraction and (for `decoded`) the decoding happen here, before any timing
    return dm


def images_per_second(dm, workers: int, skip: int, batches: int) -> float:
    """Steady-state training images/s of ``dm``'s training loader with ``workers`` worker processes."""
    dm.num_workers = workers
    it = iter(dm.train_dataloader())
    for _ in range(skip):
        next(it)
    t0 = time.perf_counter()
    n = sum(len(next(it)[1]) for _ in range(batches))
    return n / (time.perf_counter() - t0)


def in_process_rates(dms: dict, skip: int, batches: int) -> dict[tuple, tuple[float, float]]:
    """``{(source, augmentation): (images/s wall clock, images per CPU-second)}`` with 0 workers, the loaders
    taking turns batch by batch: a burst of load from other processes hits every configuration alike."""
    its = {}
    for key, dm in dms.items():
        dm.num_workers = 0
        its[key] = iter(dm.train_dataloader())
        for _ in range(skip):
            next(its[key])
    wall = dict.fromkeys(dms, 0.0)
    cpu = dict.fromkeys(dms, 0.0)
    n = dict.fromkeys(dms, 0)
    for _ in range(batches):
        for key, it in its.items():
            t0, c0 = time.perf_counter(), time.process_time()
            n[key] += len(next(it)[1])
            wall[key] += time.perf_counter() - t0
            cpu[key] += time.process_time() - c0
    return {key: (n[key] / wall[key], n[key] / max(cpu[key], 1e-9)) for key in dms}


def run(args) -> dict:
    import torch

    configs = [(s, a, w) for a in AUGMENTS for s in SOURCES for w in args.workers if w > 0]
    dms = {(s, a): make_datamodule(args.data, s, a, args.limit_per_class, args.batch, args.cache_dir)
           for a in AUGMENTS for s in SOURCES}
    need = (args.skip + args.batches) * args.batch
    have = len(dms[("jpeg", "crop+flip")].train_set)
    if have < need:
        raise SystemExit(f"loader.py: {have} training images, the timing needs {need}: raise --limit-per-class")
    info = {"date": datetime.date.today().isoformat(), "cpu": cpu_info(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "train_images": have, "batch": args.batch,
            "timed_batches": args.batches, "skipped_batches": args.skip, "rounds": args.rounds}
    keys = [f"{s}|{a}|{w}" for a in AUGMENTS for s in SOURCES for w in args.workers]
    times: dict[str, list[float]] = {k: [] for k in keys}
    cpu_rates: dict[str, list[float]] = {f"{s}|{a}|0": [] for a in AUGMENTS for s in SOURCES}
    for r in range(args.rounds):
        if 0 in args.workers:
            for (s, a), (wall, cpu) in in_process_rates(dms, args.skip, args.batches).items():
                times[f"{s}|{a}|0"].append(wall)
                cpu_rates[f"{s}|{a}|0"].append(cpu)
        k = r % max(1, len(configs))
        for s, a, w in configs[k:] + configs[:k]:  # rotating order: no configuration always runs first
            times[f"{s}|{a}|{w}"].append(images_per_second(dms[(s, a)], w, args.skip, args.batches))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    info["cpu"]["loadavg_after"] = list(os.getloadavg())
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu_rates.items() if v}
    ratios = {}
    for a in AUGMENTS:
        if 0 in args.workers:
            ratios[f"decoded/jpeg, 0 workers, {a}"] = med[f"decoded|{a}|0"] / med[f"jpeg|{a}|0"]
            ratios[f"decoded/jpeg, 0 workers, CPU time, {a}"] = cpu_med[f"decoded|{a}|0"] / cpu_med[f"jpeg|{a}|0"]
        if {0, 2} <= set(args.workers):
            for s in SOURCES:
                ratios[f"2 workers/0, {s}, {a}"] = med[f"{s}|{a}|2"] / med[f"{s}|{a}|0"]
    res = {"info": info, "images_per_second": times, "cpu_images_per_second": cpu_rates, "median": med,
           "cpu_median": cpu_med, "ratios": ratios}
    res["markdown"] = markdown(res, args.workers)
    return res


def markdown(res: dict, workers: list[int]) -> str:
    info, med, ratios = res["info"], res["median"], res["ratios"]
    cpu = info["cpu"]
    two = {0, 2} <= set(workers)
    lines = [f"Loader benchmark, {info['date']}: {cpu['model']} ({', '.join(cpu['flags']) or 'no AVX'}), "
             f"{cpu['cores']} cores, load average {cpu['loadavg'][0]:.1f} before / {cpu['loadavg_after'][0]:.1f} "
             f"after; torch {info['torch']}; {info['train_images']} training images, batch {info['batch']}, "
             f"median of {info['rounds']} rounds of {info['timed_batches']} timed batches", "",
             "| source | augmentation | " + " | ".join(f"{w} workers img/s" for w in workers)
             + " | 0 workers img / CPU-s | decoded / JPEG (0 workers: wall, CPU) |"
             + (" 2 workers / 0 |" if two else ""),
             "|---|---|" + "---|" * len(workers) + "---|---|" + ("---|" if two else "")]
    for a in AUGMENTS:
        for s in SOURCES:
            row = f"| {s} | {a} | " + " | ".join(f"{med[f'{s}|{a}|{w}']:,.0f}" for w in workers)
            row += f" | {res['cpu_median'][f'{s}|{a}|0']:,.0f} |" if 0 in workers else " | |"
            if s == "decoded" and 0 in workers:
                row += (f" **{ratios[f'decoded/jpeg, 0 workers, {a}']:.2f}×**, "
                        f"**{ratios[f'decoded/jpeg, 0 workers, CPU time, {a}']:.2f}×** |")
            else:
                row += " 1 |"
            if two:
                row += f" {ratios[f'2 workers/0, {s}, {a}']:.2f}× |"
            lines.append(row)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="folder with CIFAR-10-images_{train,test}.tar")
    ap.add_argument("--cache-dir", default=None, help="extraction/decoded cache (default $SPAIC_TRAIN_CACHE)")
    ap.add_argument("--limit-per-class", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=40, help="timed batches per measurement")
    ap.add_argument("--skip", type=int, default=4, help="batches before the timing starts")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="120 images, batch 16, one round: checks the script")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "loader.json")
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    args.data = args.data or default_data()
    if not args.data.exists():
        raise SystemExit(f"loader.py: no CIFAR-10 JPEG data at {args.data} (set --data or $SPAIC_TRAIN_DATA)")
    warnings.filterwarnings("ignore")
    res = run(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    print(res["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
