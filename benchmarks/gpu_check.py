"""The measuring half of ``benchmarks/gpu_check.sh`` (run that script; see its header).

    python benchmarks/gpu_check.py --out DIR [--dry-run] [--pytest-xml FILE --pytest-rc N]

1. ``lif``: one LIF layer of 65,536 neurons, T=256, batch 32, forward + backward of the spike sum (the ``lif``
   workload of ``benchmarks/run.py`` at the GPU size): spaic_train (``lif_sequence``: the Triton kernels on CUDA)
   vs SpikingJelly 2.0's multi-step ``LIFNode`` (its own dispatch picks its fastest CUDA kernel), same input,
   interleaved rounds, median ms; the spikes of the two are compared first.
2. ``epochs``: the ``cifar_snn`` and ``cifar_resnet19`` recipes' models at full width, batch 64, bf16 autocast,
   SGD as in the recipe: ``--batches`` timed training steps after a warm-up, on synthetic normalised images
   (the time of a dense step does not depend on the pixel values) → seconds per step, **extrapolated** to one
   epoch of the recipe (45,000 training images = 50,000 minus the 10 % validation split) and to the recipe's
   ``max_epochs``; validation / test passes and data loading are not included.
   Then a slice of a real epoch of the same recipe through the real data path: the ``cifar10`` datamodule on the
   CIFAR-10 JPEG tars (``--data``; decoded once into the uint8 cache before timing), the recipe's augmentation,
   ``data.num_workers: auto`` resolved for one CUDA training process of a multi-epoch fit (workers, pinned
   memory, persistent workers as ``python train.py recipe=... trainer=gpu`` gets them): the same training steps
   on the loader's batches (copied to the device non-blocking) → seconds per step, next to the loader alone
   (batches drawn without training) and the synthetic-input step.  **Loader-bound** when a real-data step takes
   more than 1.1 × the synthetic step: the GPU waits for data.
3. ``long_t``: peak training memory of the ``conv`` workload's net (CIFAR-shaped, width 64, batch 16) at T=16 and
   T=64, spaic_train vs SpikingJelly (peak CUDA memory allocated during one training iteration after a warm-up,
   minus the memory allocated before it) and one iteration's time.
4. A summary ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` (with the CUDA test results passed in).

``--dry-run``: the same code path on the CPU at tiny sizes (bf16 autocast on the CPU; the real data path on 12
images per class); its figures are labelled dry-run and are not GPU measurements.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import statistics
import sys
import time
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from learning import compose  # noqa: E402
from workloads import ATAN_ALPHA, BETA, TAU, V_RESET, V_TH  # noqa: E402

FULL = {"lif": dict(N=65_536, T=256, B=32, iters=10, rounds=2),
        "long_t": dict(T=(16, 64), B=16, C=(64, 128, 128), H=32),
        "epochs": dict(batch=64, warmup=5, batches=20, real_warmup=10, real_batches=50, limit_per_class=None,
                       overrides={})}
DRY = {"lif": dict(N=256, T=16, B=4, iters=2, rounds=2),
       "long_t": dict(T=(2, 4), B=2, C=(4, 8, 8), H=16),
       "epochs": dict(batch=8, warmup=1, batches=2, real_warmup=1, real_batches=3, limit_per_class=12,
                      overrides={"cifar_snn": ["model.vars.width=8", "model.vars.hidden=32"],
                                 "cifar_resnet19": ["model.vars.width=4", "model.vars.hidden=16"]})}
RECIPES = ("cifar_snn", "cifar_resnet19")
#: training images per epoch of the recipes: CIFAR-10's 50,000 minus data.val_fraction = 0.1
TRAIN_IMAGES = 45_000
#: a real-data step slower than this × the synthetic step: the run waits for its data
LOADER_BOUND_FACTOR = 1.1


def default_data() -> Path:
    """``$SPAIC_TRAIN_DATA/cifar10-jpeg``, else ``<repo>/../shared/data/cifar10-jpeg``."""
    env = os.environ.get("SPAIC_TRAIN_DATA")
    return Path(env) / "cifar10-jpeg" if env else ROOT.parent / "shared" / "data" / "cifar10-jpeg"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


# ============================================================================================ long T
def _train_step(model, opt, x, y):
    import workloads as W

    opt.zero_grad(set_to_none=True)
    W.loss_fn("conv", model.output(x), y).backward()
    opt.step()


def bench_long_t(device, size: dict) -> dict:
    """Peak training memory (MB) and one iteration's time of the conv net at each T, ours vs SpikingJelly."""
    import fw_peers
    import fw_spaic
    import workloads as W
    from machine import peak_rss_bytes, reset_peak_rss, rss_bytes

    def allocated():
        return torch.cuda.memory_allocated() if device.type == "cuda" else rss_bytes()

    def peak():
        return torch.cuda.max_memory_allocated() if device.type == "cuda" else peak_rss_bytes()

    def reset_peak():
        torch.cuda.reset_peak_memory_stats() if device.type == "cuda" else reset_peak_rss()

    rows = {}
    for T in size["T"]:
        spec = dict(W.FULL["conv"], T=T, B=size["B"], C=tuple(size["C"]), H=size["H"])
        params = W.make_params("conv", spec)
        x, y = W.make_data("conv", spec)
        x, y = x.to(device), y.to(device)
        row = {}
        for fw in ("spaic_train", "spikingjelly"):
            if fw == "spaic_train":
                model = fw_spaic.build("conv", spec, params)
                module = model.net
            else:
                model = module = fw_peers.build("spikingjelly", "conv", spec, params)
            module.to(device)
            step = functools.partial(_train_step, model, torch.optim.Adam(module.parameters(), lr=1e-3), x, y)
            step()  # warm-up
            _sync(device)
            before = allocated()
            reset_peak()
            ms = _timed(step, device)
            row[fw] = {"peak_mb": max(0.0, (peak() - before) / 2**20), "ms": ms}
        row["memory_ratio_ours_over_sj"] = row["spaic_train"]["peak_mb"] / max(row["spikingjelly"]["peak_mb"], 1e-9)
        rows[str(T)] = row
    return {"size": {**size, "T": list(size["T"])}, "rows": rows,
            "memory": "peak CUDA memory allocated" if device.type == "cuda" else "peak RSS (dry run on the CPU)"}


# ============================================================================================ lif
def bench_lif(device, size: dict) -> dict:
    from spikingjelly.activation_based import functional, neuron, surrogate

    from spaic_train.neurons import build_neuron

    ours = build_neuron("lif", tau=TAU, v_th=V_TH, v_reset=V_RESET, reset="hard", surrogate="atan",
                        surrogate_alpha=ATAN_ALPHA)
    sj = neuron.LIFNode(tau=1.0 / (1.0 - BETA), decay_input=False, v_threshold=V_TH, v_reset=V_RESET,
                        surrogate_function=surrogate.ATan(alpha=ATAN_ALPHA), detach_reset=False, step_mode="m")
    g = torch.Generator().manual_seed(1234)
    x = (0.35 + 0.6 * torch.randn(size["T"], size["B"], size["N"], generator=g)).to(device).requires_grad_(True)

    def run_ours():
        return ours.run_sequence(x)[0]

    def run_sj():
        functional.reset_net(sj)
        return sj(x)

    with torch.no_grad():
        agreement = float((run_ours() == run_sj()).float().mean())

    def step(run):
        def go():
            x.grad = None
            run().sum().backward()
        return go

    times = {"spaic_train": [], "spikingjelly": []}
    for fn in (run_ours, run_sj):  # warm-up (compiles the kernels)
        step(fn)()
    for _ in range(size["rounds"]):
        for name, fn in (("spaic_train", run_ours), ("spikingjelly", run_sj)):
            times[name] += [_timed(step(fn), device) for _ in range(size["iters"])]
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"size": {k: size[k] for k in ("N", "T", "B")}, "median_ms": med, "times_ms": times,
            "ratio_ours_over_sj": med["spaic_train"] / med["spikingjelly"], "spike_agreement": agreement}


# ============================================================================================ epochs
def bench_epoch(recipe: str, device, size: dict, data: Path | None = None) -> dict:
    from spaic_train.recipe import build_model, plain_config
    from spaic_train.training import get_loss

    cfg = compose(recipe, list(size["overrides"].get(recipe, [])))
    torch.manual_seed(0)
    model = build_model(cfg.model, (3, 32, 32)).to(device)
    m, opt_cfg = plain_config(cfg.model), plain_config(cfg.optimizer)
    loss_fn = get_loss(m["loss"], **(m.get("loss_kwargs") or {}))
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=opt_cfg["lr"],
                          **(opt_cfg.get("kwargs") or {}))
    B = size["batch"]
    x = torch.randn(B, 3, 32, 32, device=device)
    y = torch.arange(B, device=device) % 10
    model.train()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        model.apply_constraints()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{recipe}: non-finite loss {float(loss)}")

    for _ in range(size["warmup"]):
        step(x, y)
    times = [_timed(lambda: step(x, y), device) for _ in range(size["batches"])]
    per_batch = statistics.median(times) / 1e3
    steps = math.ceil(TRAIN_IMAGES / B)
    epochs = int(cfg.trainer.max_epochs)
    out = {"params": sum(p.numel() for p in model.parameters() if p.requires_grad), "batch": B,
           "time_steps": int(cfg.model.time_steps), "precision": "bf16 autocast", "timed_batches": len(times),
           "seconds_per_batch": per_batch, "batches_per_epoch": steps,
           "epoch_seconds_extrapolated": per_batch * steps, "max_epochs": epochs,
           "training_hours_extrapolated": per_batch * steps * epochs / 3600, "overrides": size["overrides"].get(recipe)}
    out["real_data"] = bench_real_data(cfg, step, device, size, data, per_batch)
    if device.type == "cuda":
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    return out


def real_datamodule(cfg, data: Path, size: dict, device):
    """The recipe's ``cifar10`` datamodule on the JPEG tars in ``data``, ``num_workers`` etc. resolved as for one
    training process on ``device`` in a multi-epoch fit, set up (extracted, decoded once) before any timing."""
    from omegaconf import OmegaConf

    from spaic_train.data.workers import TrainerContext
    from spaic_train.recipe import build_datamodule_from_config, plain_config

    d = dict(plain_config(cfg.data), format="folder", root=str(data), batch_size=size["batch"],
             limit_per_class=size["limit_per_class"])
    dm = build_datamodule_from_config(OmegaConf.create(d))
    dm.loader_context = TrainerContext(processes_per_machine=1, cuda=device.type == "cuda", multi_epoch_fit=True)
    dm.setup()
    return dm


def bench_real_data(cfg, step, device, size: dict, data: Path | None, synthetic_s: float) -> dict:
    """A slice of a real epoch: ``step`` on the loader's batches, and the loader alone, in seconds per batch."""
    if data is None or not data.exists():
        return {"measured": False, "reason": f"no CIFAR-10 JPEG tars at {data} (gpu_check.sh --data DIR)"}
    dm = real_datamodule(cfg, data, size, device)
    opts = dm.loader_options()
    it = iter(dm.train_dataloader())

    def fetch():
        xb, yb = next(it)
        return xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)

    for _ in range(size["real_warmup"]):  # starts the workers and fills their queues
        step(*fetch())
    train = [_timed(lambda: step(*fetch()), device) for _ in range(size["real_batches"])]
    alone = [_timed(fetch, device) for _ in range(size["real_batches"])]
    real_s, loader_s = statistics.median(train) / 1e3, statistics.median(alone) / 1e3
    return {"measured": True, "num_workers": opts.num_workers, "pin_memory": opts.pin_memory,
            "decode_once": dm.decode_once, "autoaugment": dm.autoaugment, "cutout": dm.cutout,
            "train_images": len(dm.train_set), "timed_batches": len(train), "seconds_per_batch": real_s,
            "loader_seconds_per_batch": loader_s, "loader_images_per_second": size["batch"] / loader_s,
            "real_over_synthetic": real_s / synthetic_s,
            "loader_bound": real_s > LOADER_BOUND_FACTOR * synthetic_s}


# ============================================================================================ summary
def pytest_summary(xml_path: str | None, rc: int | None) -> dict:
    if not xml_path or not Path(xml_path).is_file():
        return {"ran": False, "returncode": rc}
    root = ET.parse(xml_path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    return {"ran": True, "returncode": rc, **counts,
            "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"], "failed": failed}


def markdown(res: dict) -> str:
    dry = res["dry_run"]
    label = ("DRY RUN on the CPU at tiny sizes: these are NOT GPU figures (GPU: not measured)" if dry
             else f"measured on {res['device_name']}")
    p = res["pytest"]
    lines = [f"# GPU check — {res['date']}, {label}", "",
             f"torch {res['torch']}, CUDA {res['cuda']}, SpikingJelly {res['spikingjelly']}", "",
             "## CUDA tests", ""]
    if p["ran"]:
        lines.append(f"{p['passed']} passed, {p['skipped']} skipped, {p['failures'] + p['errors']} failed "
                     f"(pytest exit code {p['returncode']})" + (f": {', '.join(p['failed'])}" if p["failed"] else ""))
    else:
        lines.append("not run")
    lif = res["lif"]
    s = lif["size"]
    lines += ["", f"## `lif`: {s['N']:,} LIF neurons, T={s['T']}, batch {s['B']}, forward + backward", "",
              "| spaic_train ms | SpikingJelly ms | ours / SpikingJelly | spike agreement |", "|---|---|---|---|",
              f"| {lif['median_ms']['spaic_train']:.2f} | {lif['median_ms']['spikingjelly']:.2f} | "
              f"{lif['ratio_ours_over_sj']:.2f} | {lif['spike_agreement']:.4f} |", "",
              f"## Long T: the conv net (width {res['long_t']['size']['C'][0]}, batch {res['long_t']['size']['B']}), "
              "one training iteration after a warm-up "
              f"({res['long_t']['memory']} minus what was allocated before it)", "",
              "| T | spaic_train MB | SpikingJelly MB | ours / SpikingJelly memory | spaic_train ms | "
              "SpikingJelly ms |",
              "|---|---|---|---|---|---|",
              *[f"| {T} | {r['spaic_train']['peak_mb']:.0f} | {r['spikingjelly']['peak_mb']:.0f} | "
                f"{r['memory_ratio_ours_over_sj']:.2f} | {r['spaic_train']['ms']:.1f} | {r['spikingjelly']['ms']:.1f} |"
                for T, r in res["long_t"]["rows"].items()], "",
              "## Recipes: training time, extrapolated from timed batches (synthetic input, bf16 autocast; "
              "validation and data loading not included)", "",
              "| recipe | params | batch × T | s / batch | batches / epoch | epoch (extrapolated) | epochs | "
              "training (extrapolated) |", "|---|---|---|---|---|---|---|---|"]
    for name, e in res["epochs"].items():
        lines.append(f"| `{name}` | {e['params']:,} | {e['batch']} × {e['time_steps']} | "
                     f"{e['seconds_per_batch']:.4f} ({e['timed_batches']} timed) | {e['batches_per_epoch']} | "
                     f"{e['epoch_seconds_extrapolated'] / 60:.1f} min | {e['max_epochs']} | "
                     f"{e['training_hours_extrapolated']:.1f} h |")
    lines += ["", "## Recipes: a slice of a real epoch (JPEG tars → decoded cache, the recipe's augmentation, "
              "`num_workers: auto`) next to synthetic input", "",
              f"Loader-bound: a real-data step over {LOADER_BOUND_FACTOR} × the synthetic step.", "",
              "| recipe | workers | synthetic s / batch | real data s / batch | loader alone s / batch (images/s) | "
              "real / synthetic | loader-bound? |", "|---|---|---|---|---|---|---|"]
    for name, e in res["epochs"].items():
        r = e["real_data"]
        if not r["measured"]:
            lines.append(f"| `{name}` | not measured: {r['reason']} | | | | | |")
            continue
        lines.append(f"| `{name}` | {r['num_workers']} | {e['seconds_per_batch']:.4f} | {r['seconds_per_batch']:.4f} "
                     f"({r['timed_batches']} timed) | {r['loader_seconds_per_batch']:.4f} "
                     f"({r['loader_images_per_second']:,.0f}) | {r['real_over_synthetic']:.2f} | "
                     f"{'**yes**' if r['loader_bound'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (checks the script end to end)")
    ap.add_argument("--pytest-xml", default=None)
    ap.add_argument("--pytest-rc", type=int, default=None)
    ap.add_argument("--data", type=Path, default=None,
                    help="folder with CIFAR-10-images_{train,test}.tar (default $SPAIC_TRAIN_DATA/cifar10-jpeg, else "
                         "../shared/data/cifar10-jpeg)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; use --dry-run to check the script on the CPU")
    device = torch.device("cpu" if args.dry_run else "cuda")
    size = DRY if args.dry_run else FULL
    import importlib.metadata as md

    res = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "dry_run": args.dry_run,
           "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "cuda": torch.version.cuda, "spikingjelly": md.version("spikingjelly"),
           "pytest": pytest_summary(args.pytest_xml, args.pytest_rc)}
    t0 = time.perf_counter()
    res["lif"] = bench_lif(device, size["lif"])
    print(f"lif: {res['lif']['median_ms']} ratio {res['lif']['ratio_ours_over_sj']:.2f}", flush=True)
    res["long_t"] = bench_long_t(device, size["long_t"])
    print(f"long T: {json.dumps(res['long_t']['rows'])}", flush=True)
    res["epochs"] = {}
    for recipe in RECIPES:
        res["epochs"][recipe] = bench_epoch(recipe, device, size["epochs"], args.data or default_data())
        e = res["epochs"][recipe]
        r = e["real_data"]
        real = (f"; real data {r['seconds_per_batch']:.4f} s/batch with {r['num_workers']} workers "
                f"({'loader-bound' if r['loader_bound'] else 'not loader-bound'})" if r["measured"] else
                f"; real data not measured ({r['reason']})")
        print(f"{recipe}: {e['seconds_per_batch']:.4f} s/batch, epoch ~{e['epoch_seconds_extrapolated'] / 60:.1f} min "
              f"(extrapolated){real}", flush=True)
    res["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "gpu_check.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
