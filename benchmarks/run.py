"""CPU training benchmark: spaic_train vs SpikingJelly, snnTorch, Norse and a plain PyTorch loop (fw_plain.py)
(see benchmarks/README.md).

    python benchmarks/run.py [--workloads lif,fc,conv,delay-feedback]
                             [--frameworks spaic_train,spaic_train-keras,spikingjelly,snntorch,norse,plain-pytorch]
                             [--iters 10] [--warmup 3] [--rounds 2] [--threads 2] [--quick] [--fastpath]
                             [--learned-delays] [--memory] [--profiling] [--long-t]
                             [--json benchmarks/results/latest.json]

Each (framework, workload) runs in its own subprocess (``run.py --worker FRAMEWORK WORKLOAD ...``);
rounds are interleaved (A, B, C, D, A, B, ...).  Before timing, every framework runs one forward pass on
the same input with the same weights and its spikes are compared with spaic_train's.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from machine import machine_info, peak_rss_bytes, reset_peak_rss, rss_bytes

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OURS = "spaic_train"
KERAS = "spaic_train-keras"
PLAIN = "plain-pytorch"
SJ_MEMOPT = "spikingjelly-memopt"
PEERS = ("spikingjelly", "snntorch", "norse")
#: baselines that are not frameworks: the plain PyTorch loop (fw_plain.py) and SpikingJelly's memopt level 1
BASELINES = (PLAIN, SJ_MEMOPT)
ALL_FRAMEWORKS = (OURS, KERAS, *PEERS, *BASELINES)
#: the default set (SpikingJelly's memopt runs only with the long-T workloads, where memory is the point)
DEFAULT_FRAMEWORKS = (OURS, KERAS, *PEERS, PLAIN)
#: (framework, workload) pairs that are not run: the Keras API has no neuron-only layer
SKIP = {(KERAS, "lif"), (PLAIN, "delay-feedback"), (SJ_MEMOPT, "lif"), (SJ_MEMOPT, "fc"),
        (SJ_MEMOPT, "delay-feedback")}
RESULT_TAG = "BENCH-RESULT "


# ============================================================================================ worker side
def _setup_path() -> None:
    for p in (str(HERE), str(ROOT)):
        if p not in sys.path:
            sys.path.insert(0, p)


def _build(framework: str, workload: str, spec: dict, params: dict, probe=False):
    if framework == OURS:
        import fw_spaic

        return fw_spaic.build(workload, spec, params, probe=probe)
    if framework == KERAS:
        import fw_spaic

        return fw_spaic.build_keras_model(workload, spec, params, probe=probe)
    if framework in PEERS or framework == SJ_MEMOPT:
        import fw_peers

        return fw_peers.build(framework, workload, spec, params, probe=probe)
    if framework == PLAIN:
        import fw_plain

        return fw_plain.build(workload, spec, params, probe=probe)
    raise ValueError(f"unknown framework {framework!r}; known: {', '.join(ALL_FRAMEWORKS)}")


def _version(framework: str) -> str:
    if framework in (OURS, KERAS):
        import fw_spaic

        return fw_spaic.version()
    if framework == PLAIN:
        import fw_plain

        return fw_plain.version()
    import fw_peers

    return fw_peers.version("spikingjelly" if framework == SJ_MEMOPT else framework)


def worker(framework: str, workload: str, args) -> dict:
    _setup_path()
    warnings.filterwarnings("ignore")
    import torch
    import workloads as W

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = W.spec_for(workload, args.quick)
    params = W.make_params(workload, spec)
    x, y = W.make_data(workload, spec)
    probe = bool(args.check_out)
    # memory is counted from here, before the framework (or peer) is imported: fixed runtimes count
    gc.collect()
    rss_pre_import = rss_bytes()
    hwm_reset = reset_peak_rss()
    if probe and workload == "delay-feedback" and framework in (OURS, KERAS):
        probe = "zero-delay"
    model = _build(framework, workload, spec, params, probe=probe)
    x = model.prepare_input(x) if hasattr(model, "prepare_input") else x
    info = {"framework": framework, "workload": workload, "version": _version(framework),
            "note": getattr(model, "note", "exact"), "threads": torch.get_num_threads(), "spec": spec}

    if args.check_out:
        with torch.no_grad():
            spikes = [s.detach().float() for s in model.probe(x)]
        torch.save(spikes, args.check_out)
        info["layers"] = [list(s.shape) for s in spikes]
        return info

    if W.uses_optimizer(workload):
        step = W.training_step(workload, model, x, y)
    else:
        x = x.detach().clone().requires_grad_(True)

        def step():
            x.grad = None
            W.loss_fn(workload, model.output(x), y).backward()

    if framework in (OURS, KERAS):
        # numba's runtime and the compiled LIF kernels (~120 MB) load before the warm-up so that no timed step
        # pays for them; their resident size counts in the peak (it is part of what the user pays)
        from spaic_train.neurons import load_compiled_kernels

        before = rss_bytes()
        info["compiled_kernels"] = load_compiled_kernels("cpu")
        info["kernel_load_mb"] = (rss_bytes() - before) / 2**20
    gc.collect()
    rss0 = rss_pre_import
    rss_setup = rss_bytes()
    times = W.timed(step, args.warmup, args.iters)
    peak = peak_rss_bytes()
    info.update(times_ms=times, rss_before_mb=rss0 / 2**20, rss_before_training_mb=rss_setup / 2**20,
                peak_rss_mb=peak / 2**20,
                peak_delta_mb=max(0.0, (peak - rss0) / 2**20), peak_counter_reset=hwm_reset)
    return info


# ============================================================================================ driver side
def _worker_cmd(framework, workload, args, iters, check_out=None, warmup=None):
    warmup = args.warmup if warmup is None else warmup
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, workload,
           "--iters", str(iters), "--warmup", str(warmup), "--threads", str(args.threads)]
    if args.quick:
        cmd.append("--quick")
    if check_out:
        cmd += ["--check-out", check_out]
    return cmd


def _spawn(cmd, args) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(args.threads)
    env["PYTHONWARNINGS"] = "ignore"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
    return {"error": f"exit code {proc.returncode}: " + " | ".join(tail)}


def _agreement(ref, other) -> dict:
    import torch

    per_layer = []
    equal = total = 0
    for a, b in zip(ref, other):
        if a.shape != b.shape:
            return {"error": f"shape mismatch {tuple(a.shape)} vs {tuple(b.shape)}"}
        e = int((a == b).sum())
        per_layer.append(e / a.numel())
        equal += e
        total += a.numel()
    if len(ref) != len(other):
        return {"error": f"{len(ref)} vs {len(other)} layers"}
    return {"fraction": equal / total, "per_layer": per_layer,
            "ref_rates": [float(torch.as_tensor(a).float().mean()) for a in ref]}


def check_agreement(workloads, frameworks, args, log) -> dict:
    import torch
    import workloads as W

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for wl in workloads:
            if wl in ("memory", "delays", *W.LONG_T_WORKLOADS):
                # memory: probes run without autograd, where checkpoint_steps does nothing; delays: the relaxed
                # (training) path differs from the integer one by design (eval is equal bit for bit: tests)
                continue
            out[wl] = {}
            ref_fw = OURS if wl not in ("fastpath",) else None
            files = {}
            if ref_fw:
                pairs = [(fw, wl) for fw in frameworks if (fw, wl) not in SKIP]
            else:
                pairs = [(OURS, "fastpath-batched"), (OURS, "fastpath-step")]
            for fw, w in pairs:
                path = os.path.join(tmp, f"{fw}-{w}.pt")
                res = _spawn(_worker_cmd(fw, w, args, 0, check_out=path), args)
                key = fw if ref_fw else w
                if "error" in res:
                    out[wl][key] = {"error": res["error"]}
                    log(f"  agreement {wl:15s} {key:18s} ERROR {res['error'][:200]}")
                    continue
                files[key] = torch.load(path)
            ref_key = OURS if ref_fw else "fastpath-batched"
            if ref_key not in files:
                continue
            for key, spikes in files.items():
                if key == ref_key:
                    continue
                out[wl][key] = _agreement(files[ref_key], spikes)
                a = out[wl][key]
                if "error" in a:
                    log(f"  agreement {wl:15s} {key:18s} ERROR {a['error']}")
                else:
                    log(f"  agreement {wl:15s} {key:18s} {a['fraction']:.6f}  (per layer "
                        f"{', '.join(f'{v:.4f}' for v in a['per_layer'])}; ref. rates "
                        f"{', '.join(f'{v:.3f}' for v in a['ref_rates'])})")
    return out


def _summary(runs) -> dict:
    errors = [r["error"] for r in runs if "error" in r]
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": errors[0] if errors else "no result"}
    times = [t for r in ok for t in r["times_ms"]]
    times_sorted = sorted(times)
    q = statistics.quantiles(times_sorted, n=4) if len(times_sorted) >= 2 else [times_sorted[0]] * 3
    return {"median_ms": statistics.median(times), "min_ms": times_sorted[0], "q1_ms": q[0], "q3_ms": q[2],
            "n_iters": len(times), "times_ms": times, "peak_delta_mb": max(r["peak_delta_mb"] for r in ok),
            "rss_before_mb": statistics.median(r["rss_before_mb"] for r in ok), "note": ok[0]["note"],
            "version": ok[0]["version"], "rounds": len(ok), "errors": errors}


#: the frameworks of the long-T rows: the plain loop, snnTorch, and SpikingJelly's fastest CPU path and memopt
LONG_T_FRAMEWORKS = (OURS, PLAIN, "spikingjelly", SJ_MEMOPT, "snntorch")
#: peer libraries (not the plain loop) a ratio "vs the fastest / lowest peer" is taken over
PEER_LIBRARIES = (*PEERS, SJ_MEMOPT)


def _fmt_long_t(results) -> str:
    """Per long-T row: ours over the fastest / lowest-memory peer library and over the plain loop."""
    import workloads as W

    lines = []
    for wl in W.LONG_T_WORKLOADS:
        d = results.get(wl, {})
        ours = d.get(OURS, {})
        if "median_ms" not in ours:
            continue
        peers = {fw: s for fw, s in d.items() if fw in PEER_LIBRARIES and "median_ms" in s}
        plain = d.get(PLAIN, {})
        parts = [f"{wl}: ours {ours['median_ms']:.0f} ms, {ours['peak_delta_mb']:.0f} MB"]
        if peers:
            fast = min(peers, key=lambda f: peers[f]["median_ms"])
            low = min(peers, key=lambda f: peers[f]["peak_delta_mb"])
            parts.append(f"time {ours['median_ms'] / peers[fast]['median_ms']:.2f}x fastest peer ({fast})")
            parts.append(f"memory {ours['peak_delta_mb'] / peers[low]['peak_delta_mb']:.2f}x lowest peer ({low})")
        if "median_ms" in plain:
            parts.append(f"time {ours['median_ms'] / plain['median_ms']:.2f}x / memory "
                         f"{ours['peak_delta_mb'] / plain['peak_delta_mb']:.2f}x the plain loop")
        lines.append("; ".join(parts))
    return "\n".join(lines)


#: --memory: untimed + timed iterations of each memory worker (one round; the peak RSS is the point)
MEMORY_WARMUP, MEMORY_ITERS = 1, 2


def run_timing(workloads, frameworks, args, log) -> dict:
    import workloads as W

    per_round = max(1, math.ceil(args.iters / args.rounds))
    raw = {wl: {fw: [] for fw in frameworks if (fw, wl) not in SKIP} for wl in workloads if wl != "memory"}
    for wl in workloads:
        if wl == "memory":
            raw[wl] = {}
            for variant in W.MEMORY_WORKLOADS:
                res = _spawn(_worker_cmd(OURS, variant, args, MEMORY_ITERS, warmup=MEMORY_WARMUP), args)
                raw[wl][variant] = [res]
                msg = res.get("error") or (f"median {statistics.median(res['times_ms']):.1f} ms, "
                                           f"peak {res['peak_delta_mb']:.0f} MB")
                log(f"  memory {variant:20s} {msg[:200]}")
            continue
        paired = {"fastpath": W.FASTPATH_WORKLOADS, "delays": W.DELAY_WORKLOADS}.get(wl)
        fws = list(paired) if paired else [f for f in frameworks if (f, wl) not in SKIP]
        if wl in W.LONG_T_WORKLOADS:
            fws = [f for f in LONG_T_FRAMEWORKS if f in frameworks or f in BASELINES]
        for r in range(args.rounds):
            for fw in fws:
                if paired:
                    res = _spawn(_worker_cmd(OURS, fw, args, per_round), args)
                    raw[wl].setdefault(fw, []).append(res)
                else:
                    res = _spawn(_worker_cmd(fw, wl, args, per_round), args)
                    raw[wl].setdefault(fw, []).append(res)
                msg = res.get("error") or (f"median {statistics.median(res['times_ms']):.1f} ms, "
                                           f"peak {res['peak_delta_mb']:.0f} MB")
                log(f"  round {r + 1}/{args.rounds} {wl:15s} {fw:18s} {msg[:200]}")
    return {wl: {fw: _summary(runs) for fw, runs in d.items() if runs} for wl, d in raw.items()}


def _fmt_table(results, agreement) -> str:
    head = (f"{'workload':15s} {'framework':18s} {'ms/iter':>10s} {'[q1, q3]':>19s} {'ours/peer':>9s} "
            f"{'peak MB':>8s} {'agreement':>10s}  note")
    lines = [head, "-" * len(head)]
    for wl, d in results.items():
        if wl in ("fastpath", "memory", "delays"):
            continue
        ours = d.get(OURS, {}).get("median_ms")
        for fw, s in d.items():
            if "error" in s:
                lines.append(f"{wl:15s} {fw:18s} {'cannot run: ' + s['error'][:150]}")
                continue
            ratio = "" if fw == OURS or ours is None else f"{ours / s['median_ms']:.2f}"
            ag = agreement.get(wl, {}).get(fw, {})
            ag_s = "ref" if fw == OURS else (f"{ag['fraction']:.4f}" if "fraction" in ag else "n/a")
            lines.append(f"{wl:15s} {fw:18s} {s['median_ms']:10.1f} [{s['q1_ms']:8.1f},{s['q3_ms']:8.1f}] "
                         f"{ratio:>9s} {s['peak_delta_mb']:8.1f} {ag_s:>10s}  {s['note']}")
    return "\n".join(lines)


def _fmt_fastpath(results, agreement) -> str:
    d = results.get("fastpath")
    if not d:
        return ""
    b, s = d.get("fastpath-batched", {}), d.get("fastpath-step", {})
    if "median_ms" not in b or "median_ms" not in s:
        return f"fastpath: error {b.get('error') or s.get('error')}"
    ag = agreement.get("fastpath", {}).get("fastpath-step", {})
    ag_s = f"{ag['fraction']:.4f}" if "fraction" in ag else "n/a"
    return (f"fastpath (spaic_train, delayed feed-forward): time-batched {b['median_ms']:.1f} ms/iter "
            f"(peak {b['peak_delta_mb']:.0f} MB), step-by-step {s['median_ms']:.1f} ms/iter "
            f"(peak {s['peak_delta_mb']:.0f} MB); speed-up step/batched = {s['median_ms'] / b['median_ms']:.2f}x; "
            f"spike agreement {ag_s}")


def _fmt_delays(results) -> str:
    d = results.get("delays")
    if not d:
        return ""
    f, lr = d.get("delays-fixed", {}), d.get("delays-learned", {})
    if "median_ms" not in f or "median_ms" not in lr:
        return f"learned delays: error {f.get('error') or lr.get('error')}"
    return (f"learned delays (spaic_train, the fastpath net): fixed {f['median_ms']:.1f} ms/iter "
            f"(peak {f['peak_delta_mb']:.0f} MB), learnable {lr['median_ms']:.1f} ms/iter "
            f"(peak {lr['peak_delta_mb']:.0f} MB); learnable/fixed = {lr['median_ms'] / f['median_ms']:.2f}x time, "
            f"{lr['peak_delta_mb'] / max(f['peak_delta_mb'], 1e-9):.2f}x peak memory")


def _fmt_memory(results, quick: bool) -> str:
    d = results.get("memory")
    if not d:
        return ""
    import workloads as W

    lines = ["memory (spaic_train, checkpoint through time; peak MB = peak RSS minus RSS before training):"]
    for base in ("fc", "conv"):
        p, c = d.get(f"memory-{base}-plain", {}), d.get(f"memory-{base}-ckpt", {})
        spec = W.spec_for(f"memory-{base}-ckpt", quick)
        if "median_ms" not in p or "median_ms" not in c:
            lines.append(f"  {base:5s} T={spec['T']}: error {p.get('error') or c.get('error')}")
            continue
        saving = 1.0 - c["peak_delta_mb"] / p["peak_delta_mb"] if p["peak_delta_mb"] > 0 else float("nan")
        slower = c["median_ms"] / p["median_ms"]
        lines.append(f"  {base:5s} T={spec['T']:<4d} plain {p['peak_delta_mb']:8.1f} MB {p['median_ms']:9.1f} ms/iter"
                     f" | checkpoint_steps={spec['checkpoint_steps']:<3d} {c['peak_delta_mb']:8.1f} MB "
                     f"{c['median_ms']:9.1f} ms/iter | peak {-100 * saving:+.0f} %, time x{slower:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="lif,fc,conv,delay-feedback")
    ap.add_argument("--frameworks", default=",".join(DEFAULT_FRAMEWORKS))
    ap.add_argument("--iters", type=int, default=None, help="timed iterations in total over all rounds (default 10)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed iterations per worker (default 3)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 3 iterations, 1 warm-up, 1 round (smoke test)")
    ap.add_argument("--fastpath", action="store_true", help="also time spaic_train time-batched vs mode='step'")
    ap.add_argument("--learned-delays", action="store_true",
                    help="also time spaic_train's fastpath net with learnable vs fixed per-synapse delays")
    ap.add_argument("--memory", action="store_true",
                    help="also compare spaic_train's peak RSS at long T without / with checkpoint_steps")
    ap.add_argument("--profiling", action="store_true",
                    help="also time fc/conv training with SOP counting on vs off (benchmarks/profiling_cost.py)")
    ap.add_argument("--long-t", action="store_true",
                    help="also time the conv net at T = 4, 16, 64 against the plain loop, snnTorch and SpikingJelly "
                         "(plain and memopt level 1)")
    ap.add_argument("--no-check", action="store_true", help="skip the spike-agreement check")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per worker process")
    ap.add_argument("--json", default=str(HERE / "results" / "latest.json"))
    ap.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "WORKLOAD"), help=argparse.SUPPRESS)
    ap.add_argument("--check-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.iters is None:
        args.iters = 3 if args.quick else 10
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2

    if args.worker:
        fw, wl = args.worker
        res = worker(fw, wl, args)
        print(RESULT_TAG + json.dumps(res), flush=True)
        return 0

    _setup_path()
    import workloads as W

    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    for w in workloads:
        if w not in W.WORKLOADS + W.LONG_T_WORKLOADS:
            ap.error(f"unknown workload {w!r}; choose from {', '.join(W.WORKLOADS)}")
    for f in frameworks:
        if f not in ALL_FRAMEWORKS:
            ap.error(f"unknown framework {f!r}; choose from {', '.join(ALL_FRAMEWORKS)}")
    if OURS not in frameworks:
        frameworks.insert(0, OURS)
    if args.fastpath:
        workloads.append("fastpath")
    if args.learned_delays:
        workloads.append("delays")
    if args.memory:
        workloads.append("memory")
    if args.long_t:
        workloads += list(W.LONG_T_WORKLOADS)

    def log(msg):
        print(msg, flush=True)

    t0 = time.time()
    machine = machine_info()
    log(f"machine: {machine['cpu']} ({machine['logical_cores']} logical cores), torch {machine['torch']}, "
        f"threads {args.threads}, {'QUICK sizes' if args.quick else 'full sizes'}")
    log(f"CPU vector flags: {' '.join(machine['vector_flags']) or 'none found'}")
    agreement = {}
    if not args.no_check:
        log("spike agreement (same input, same weights; fraction of equal spike entries over all layers):")
        agreement = check_agreement(workloads, frameworks, args, log)
    log(f"timing: {args.rounds} interleaved round(s), {max(1, math.ceil(args.iters / args.rounds))} timed + "
        f"{args.warmup} warm-up iterations per worker:")
    results = run_timing(workloads, frameworks, args, log)

    versions = {}
    for d in results.values():
        for fw, s in d.items():
            if "version" in s:
                versions[OURS if fw.startswith(("fastpath", "memory", "delays")) else fw] = s["version"]
    ratios = {wl: {fw: d[OURS]["median_ms"] / s["median_ms"] for fw, s in d.items()
                   if fw != OURS and "median_ms" in s and "median_ms" in d.get(OURS, {})}
              for wl, d in results.items() if wl not in ("fastpath", "memory", "delays")}
    mem_ratios = {wl: {fw: d[OURS]["peak_delta_mb"] / s["peak_delta_mb"] for fw, s in d.items()
                       if fw != OURS and s.get("peak_delta_mb") and "peak_delta_mb" in d.get(OURS, {})}
                  for wl, d in results.items() if wl not in ("fastpath", "memory", "delays")}
    log("")
    log("ms/iter = median wall time of one full training iteration (forward over all T, loss, backward, "
        "Adam step; lif: forward + backward only); ours/peer < 1 means spaic_train is faster; "
        "peak MB = peak RSS minus RSS before the framework import (fixed runtimes such as numba's count)")
    log(_fmt_table(results, agreement))
    fp = _fmt_fastpath(results, agreement)
    if fp:
        log(fp)
    ld = _fmt_delays(results)
    if ld:
        log(ld)
    mem = _fmt_memory(results, args.quick)
    if mem:
        log(mem)
    lt = _fmt_long_t(results)
    if lt:
        log("long T (conv net; peak MB = peak RSS minus RSS before the framework import):")
        log(lt)
    report = {
        "machine": machine, "versions": versions,
        "settings": {"workloads": workloads, "frameworks": frameworks, "iters": args.iters, "warmup": args.warmup,
                     "rounds": args.rounds, "threads": args.threads, "quick": args.quick,
                     "specs": {w: ({v: W.spec_for(v, args.quick) for v in W.MEMORY_WORKLOADS} if w == "memory"
                                   else W.spec_for(w, args.quick)) for w in workloads},
                     "descriptions": {w: W.DESCRIPTIONS["long-t" if w in W.LONG_T_WORKLOADS else w]
                                      for w in workloads}},
        "agreement": agreement, "results": results, "ratios_ours_over_peer": ratios,
        "memory_ratios_ours_over_peer": mem_ratios,
        "wall_s": round(time.time() - t0, 1),
    }
    if "fastpath" in results:
        d = results["fastpath"]
        if "median_ms" in d.get("fastpath-batched", {}) and "median_ms" in d.get("fastpath-step", {}):
            report["fastpath_speedup_step_over_batched"] = (d["fastpath-step"]["median_ms"]
                                                            / d["fastpath-batched"]["median_ms"])
    if "delays" in results:
        f, lr = results["delays"].get("delays-fixed", {}), results["delays"].get("delays-learned", {})
        if "median_ms" in f and "median_ms" in lr:
            report["learned_over_fixed_delays"] = {"time": lr["median_ms"] / f["median_ms"],
                                                   "peak_mb": lr["peak_delta_mb"] / max(f["peak_delta_mb"], 1e-9)}
    if "memory" in results:
        d = results["memory"]
        report["memory_peak_mb_plain_vs_checkpointed"] = {
            base: [d.get(f"memory-{base}-{k}", {}).get("peak_delta_mb") for k in ("plain", "ckpt")]
            for base in ("fc", "conv")}
    if args.profiling:
        import profiling_cost

        log("SOP counting during training (on = record + count every batch), interleaved:")
        report["profiling_cost"] = [profiling_cost.measure(wl, args.iters, args.warmup, args.threads, args.quick)
                                    for wl in ("fc", "conv") if wl in workloads]
        for r in report["profiling_cost"]:
            log(f"  {r['workload']:5s} on/off {r['on_over_off']:.3f} (CPU time {r['on_over_off_cpu']:.3f}; counting "
                f"alone {r['count_over_step_cpu']:.1%} of a step)")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
