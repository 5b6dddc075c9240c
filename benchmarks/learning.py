"""Learning parity on real CIFAR-10: spaic_train vs SpikingJelly training the same network.

    python benchmarks/learning.py                 # full comparison (<= 40 min on 2 cores)
    python benchmarks/learning.py --quick         # smoke run (<= 5 min): tiny subset and network, 1 seed
    python benchmarks/learning.py --recipes       # cifar_snn vs cifar_spaic_ref in spaic_train, same subset/budget
    python benchmarks/learning.py --precision-compare   # spaic_train's network in bf16-mixed vs float32 (CPU)

Parity (default).  The network is the ``cifar_snn`` recipe's model (``model/cifar_net.yaml``: the PLIF paper's
CIFAR10Net, 6 conv-BN-LIF layers, 2 max-pools, dropout, fc, 10 per-step logits), narrowed to ``--width`` /
``--hidden`` for a CPU, built by spaic_train from the recipe's config and rebuilt in SpikingJelly 2.0 from its
multi-step layers (``layer.Conv2d`` / ``BatchNorm2d`` / ``MaxPool2d`` / ``Flatten`` / ``Dropout`` / ``Linear`` and
``neuron.LIFNode(decay_input=False, step_mode='m')``), with spaic_train's initial weights copied in.  Before
training, one forward pass on the same batch (training-mode batch norm, dropout off) must give the same spikes
in every layer and the same logits.  Both then train with the recipe's loss (TET, lambda 0.05) and optimizer
(SGD 0.1, momentum 0.9, weight decay 5e-4, cosine over the epochs), on the same data in the same order (one
permutation and one crop/flip augmentation per epoch, shared), each epoch run for both frameworks back to back
(alternating which goes first) so that the machine's load hits both alike.  Both run the same plain PyTorch
training loop (no Lightning).  Reported per seed: test accuracy after every epoch and the wall time of every
training epoch.

Precision (``--precision-compare``).  The same spaic_train network, built twice from the same seed (identical
initial weights, checked), trained in float32 and in bf16 mixed precision: ``torch.autocast('cpu',
dtype=torch.bfloat16)`` around the forward pass and the loss, in training and in evaluation, with backward and the
optimizer step outside it on float32 weights — exactly what Lightning's ``precision="bf16-mixed"`` (``fit(...,
precision="bf16-mixed")``, ``trainer.precision=bf16-mixed``) wraps around a step on the CPU (no gradient scaler for
bf16).  Under it convolutions and linear layers compute in bf16 and LIF layers integrate in float32
(tests/test_bf16_cpu.py).  Same data order, same dropout masks, epochs interleaved as above.  Reported: final test
accuracy and epoch times per seed for both, the mean over seeds, bf16 − fp32 in points (target: within 0.5) and the
bf16 / fp32 time ratio.  The CPU's bf16-relevant flags (``lscpu``) are recorded; without ``avx512_bf16`` (bf16 then
runs emulated) the mode prints "bf16: not measured (CPU lacks avx512_bf16)" and trains nothing.

Data: a fixed, stratified subset of the CIFAR-10 JPEG tars (``--data``, default ``../shared/data/cifar10-jpeg``;
extracted once into ``~/.cache/spaic_train``), chosen with ``--data-seed`` and shuffled; images are decoded once.

Output: a Markdown table on stdout (date, CPU, torch version, threads) and JSON (``--json``, default
``benchmarks/results/learning.json``).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from machine import cpu_flags, machine_info  # noqa: E402
from workloads import ATAN_ALPHA, TAU, V_RESET, V_TH  # noqa: E402

from spaic_train.data.cifar_arrays import augment, load_cifar_subset, normalize  # noqa: E402, F401 (augment: tests)

#: full / quick settings (``--width`` etc. override them)
FULL = dict(n_train=10_000, n_test=10_000, n_curve=2_000, width=16, hidden=128, T=4, batch=64, epochs=6, seeds=3)
QUICK = dict(n_train=2_000, n_test=500, n_curve=500, width=8, hidden=64, T=2, batch=50, epochs=3, seeds=1)
#: widths of the --recipes comparison at full / quick size: recipe -> model.vars overrides
RECIPE_VARS = {
    False: {"cifar_snn": {"width": 16, "hidden": 128}, "cifar_spaic_ref": {"width": 16}},
    True: {"cifar_snn": {"width": 8, "hidden": 64}, "cifar_spaic_ref": {"width": 8}},
}
OURS, SJ = "spaic_train", "spikingjelly"
FP32, BF16 = "spaic_train fp32", "spaic_train bf16-mixed"
#: CPU flags that decide how bf16 runs: the AVX-512 BF16 instructions (required here) and the AMX tiles oneDNN uses
#: for bf16 convolutions and matrix products
BF16_FLAGS = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


# ============================================================================================ data
def load_subset(root: str, n_train: int, n_test: int, seed: int):
    """``(x_train, y_train, x_test, y_test)``: ``n/10`` images per class of each split drawn with ``seed``, shuffled;
    ``x`` uint8 ``[N, 3, 32, 32]``, ``y`` int64 ``[N]`` (:func:`spaic_train.data.cifar_arrays.load_cifar_subset`)."""
    try:
        return load_cifar_subset(root, n_train, n_test, seed)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"learning.py: {e} (--data {root})") from None


# ============================================================================================ models
def compose(recipe: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from spaic_train.cli import CONFIG_DIR
    from spaic_train.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=[f"recipe={recipe}", *overrides])


class Trainee:
    """One framework's network with its loss, optimizer and cosine schedule; ``output(x)`` → ``[T, B, 10]``."""

    def __init__(self, name, net, output, loss, opt_cfg, epochs, after_step=None, amp_dtype=None):
        self.name, self.net, self.output, self.loss = name, net, output, loss
        self.amp_dtype = amp_dtype
        kw = dict(opt_cfg.get("kwargs") or {})
        self.opt = torch.optim.SGD(net.parameters(), lr=float(opt_cfg["lr"]), **kw) if opt_cfg["name"] == "sgd" \
            else torch.optim.Adam(net.parameters(), lr=float(opt_cfg["lr"]), **kw)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=epochs)
        self.after_step = after_step or (lambda: None)

    def train_epoch(self, x, y, batch):
        self.net.train()
        total = 0.0
        for i in range(0, x.shape[0], batch):
            xb, yb = x[i:i + batch], y[i:i + batch]
            self.opt.zero_grad(set_to_none=True)
            with self.autocast():
                loss = self.loss(self.output(xb), yb)
            loss.backward()
            self.opt.step()
            self.after_step()
            total += float(loss.detach()) * xb.shape[0]
        self.sched.step()
        return total / x.shape[0]

    @torch.no_grad()
    def hits(self, x, y, batch=500) -> torch.Tensor:
        """Per-sample correctness (bool ``[N]``) of the time-averaged logits, in eval mode."""
        self.net.eval()
        with self.autocast():
            return torch.cat([self.output(x[i:i + batch]).mean(0).argmax(1) == y[i:i + batch]
                              for i in range(0, x.shape[0], batch)])

    def autocast(self):
        """CPU autocast in ``amp_dtype`` around forward and loss (Lightning's ``bf16-mixed`` on the CPU); off when
        ``amp_dtype`` is ``None``."""
        return torch.autocast("cpu", dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp_dtype is not None)


def build_ours(spec: dict, epochs: int, recipe: str = "cifar_snn", model_vars: dict | None = None):
    """The recipe's model (``model.vars`` overridden) and its loss / optimizer settings."""
    from spaic_train.recipe import build_model, plain_config
    from spaic_train.training import get_loss

    mv = dict(model_vars or {})
    overrides = [f"model.vars.{k}={v}" for k, v in mv.items()] + [f"model.time_steps={spec['T']}"]
    cfg = compose(recipe, overrides)
    model = build_model(cfg.model, (3, 32, 32))
    m = plain_config(cfg.model)
    loss = get_loss(m["loss"], **(m.get("loss_kwargs") or {}))
    if m["decoder"] == "sequence":
        output = model
    else:  # a per-sample decoder: give the evaluation a length-1 "sequence"
        def output(x):
            return model(x).unsqueeze(0)
    return Trainee(OURS, model, output, loss, plain_config(cfg.optimizer), epochs, model.apply_constraints), cfg


def parity_overrides(spec: dict) -> dict:
    """``model.vars`` of the parity network: beta = exp(-1/tau) = 0.5 exactly, SpikingJelly's ``tau=2``."""
    return {"width": spec["width"], "hidden": spec["hidden"], "tau": repr(TAU), "neuron": "lif"}


def build_spikingjelly(ours: Trainee, cfg, spec: dict, epochs: int) -> Trainee:
    """The same network in SpikingJelly, with ``ours``' current weights and buffers copied in."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate
    from torch import nn

    from spaic_train.recipe import plain_config

    w, h, p = spec["width"], spec["hidden"], float(cfg.model.vars.dropout)

    def lif():
        return neuron.LIFNode(tau=1.0 / (1.0 - math.exp(-1.0 / TAU)), decay_input=False, v_threshold=V_TH,
                              v_reset=V_RESET, surrogate_function=surrogate.ATan(alpha=ATAN_ALPHA),
                              detach_reset=False, step_mode="m")

    mods: list = []
    for i in range(6):
        mods += [layer.Conv2d(3 if i == 0 else w, w, 3, padding=1, bias=False), layer.BatchNorm2d(w), lif()]
        if i in (2, 5):
            mods.append(layer.MaxPool2d(2, 2))
    mods += [layer.Flatten(), layer.Dropout(p), layer.Linear(w * 8 * 8, h), lif(), layer.Dropout(p),
             layer.Linear(h, 10)]
    net = nn.Sequential(*mods)
    functional.set_step_mode(net, "m")
    copy_weights(ours.net, net)
    T = spec["T"]

    def output(x):
        functional.reset_net(net)
        return net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))

    return Trainee(SJ, net, output, ours.loss, plain_config(cfg.optimizer), epochs)


def copy_weights(model, sj_net) -> None:
    """Copy spaic_train's conv / batch-norm / linear tensors into the SpikingJelly net, in network order."""
    from torch import nn

    ours = []
    for conn in model.connections:
        ours.append(("weight", conn.weight, conn.bias))
        ours += [("bn", op.bn) for op in conn.synapses if hasattr(op, "bn")]
    theirs = [m for m in sj_net.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    if len(ours) != len(theirs):
        raise RuntimeError(f"layer count differs: {len(ours)} vs {len(theirs)}")
    with torch.no_grad():
        for src, dst in zip(ours, theirs):
            if src[0] == "bn":
                dst.load_state_dict(src[1].state_dict())
                continue
            if dst.weight.shape != src[1].shape:
                raise RuntimeError(f"weight shape differs: {tuple(src[1].shape)} vs {tuple(dst.weight.shape)}")
            dst.weight.copy_(src[1])
            if (dst.bias is None) != (src[2] is None):
                raise RuntimeError("bias presence differs")
            if dst.bias is not None:
                dst.bias.copy_(src[2])


def check_same_outputs(ours: Trainee, sj: Trainee, x: torch.Tensor) -> dict:
    """One forward pass of float64 copies of both nets on ``x`` (training-mode batch norm, dropout off): the
    spikes of every LIF layer and the logits, compared.

    float64 because in float32 the two frameworks' convolutions (channels-last vs NCHW) and batch-norm reductions
    round differently; a membrane within ~1e-7 of the threshold then spikes in one and not the other, and the
    flip spreads through the following layers (~0.1 % of the spikes here), which would hide a real difference.
    """
    from spikingjelly.activation_based import functional, layer, neuron

    a, b = copy.deepcopy(ours.net).double(), copy.deepcopy(sj.net).double()
    x = x.double()
    a.train(), b.train()
    for m in a.modules():
        if type(m).__name__ == "Dropout":
            m.eval()
    for m in b.modules():
        if isinstance(m, layer.Dropout):
            m.eval()
    sj_spikes = []
    hooks = [m.register_forward_hook(lambda mod, i, o: sj_spikes.append(o.detach()))
             for m in b.modules() if isinstance(m, neuron.LIFNode)]
    with torch.no_grad(), a.record(("O",)) as rec:
        out_a = a(x)
        functional.reset_net(b)
        out_b = b(x.unsqueeze(0).repeat(out_a.shape[0], 1, 1, 1, 1))
    for hk in hooks:
        hk.remove()
    ours_spikes = [rec[layer_.name]["O"] for layer_ in a.layers if layer_.group is not None
                   and getattr(layer_, "neuron", None) == "lif"]
    equal = total = 0
    for s_a, s_b in zip(ours_spikes, sj_spikes):
        equal += int((s_a == s_b).sum())
        total += s_a.numel()
    return {"spike_agreement": equal / max(1, total), "layers": len(sj_spikes),
            "rates": [round(float(s.mean()), 4) for s in ours_spikes],
            "max_logit_diff": float((out_a - out_b).abs().max()),
            "same_predictions": float((out_a.mean(0).argmax(1) == out_b.mean(0).argmax(1)).float().mean())}


# ============================================================================================ precision
def bf16_flags(flags) -> dict:
    """``{flag: present}`` for each of :data:`BF16_FLAGS` in the CPU's ``flags`` (as ``lscpu`` lists them)."""
    present = set(flags)
    return {f: f in present for f in BF16_FLAGS}


def bf16_unmeasured(flags) -> str | None:
    """What to print instead of a bf16 measurement on a CPU without ``avx512_bf16`` (there torch emulates bf16, so
    a time would measure the emulation); ``None`` on a CPU that has it."""
    return None if "avx512_bf16" in set(flags) else "bf16: not measured (CPU lacks avx512_bf16)"


def build_precision_pair(spec: dict, seed: int) -> list[Trainee]:
    """The parity network built twice from ``seed``: float32 and bf16-mixed, with identical initial weights."""
    pair = []
    for name, dtype in ((FP32, None), (BF16, torch.bfloat16)):
        torch.manual_seed(seed)
        t, _ = build_ours(spec, spec["epochs"], model_vars=parity_overrides(spec))
        t.name, t.amp_dtype = name, dtype
        pair.append(t)
    a, b = (t.net.state_dict() for t in pair)
    if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
        raise RuntimeError("the float32 and bf16 networks start from different weights")
    return pair


def precision_report(runs: dict, summary: dict) -> tuple[dict, str]:
    """bf16 vs float32: the figures (``extra``) and a per-seed Markdown table of final accuracy and epoch times."""
    fp, bf = summary[FP32], summary[BF16]
    gap = 100 * (bf["final_mean"] - fp["final_mean"])
    ratio = bf["median_epoch_s"] / fp["median_epoch_s"]
    # each epoch ran for both back to back: the ratio within a pair sees the same load
    paired = [b / a for seed in runs[FP32]
              for a, b in zip(runs[FP32][seed]["epoch_seconds"], runs[BF16][seed]["epoch_seconds"])]
    lines = ["| seed | fp32 final acc. | bf16 final acc. | bf16 − fp32 | fp32 s / epoch | bf16 s / epoch | "
             "bf16 / fp32 time (median of epoch pairs) |", "|---|---|---|---|---|---|---|"]
    for seed in runs[FP32]:
        a, b = runs[FP32][seed], runs[BF16][seed]
        pairs = [y / x for x, y in zip(a["epoch_seconds"], b["epoch_seconds"])]
        lines.append(f"| {seed} | {100 * a['final_test_accuracy']:.2f} % | {100 * b['final_test_accuracy']:.2f} % | "
                     f"{100 * (b['final_test_accuracy'] - a['final_test_accuracy']):+.2f} | "
                     f"{', '.join(f'{t:.1f}' for t in a['epoch_seconds'])} | "
                     f"{', '.join(f'{t:.1f}' for t in b['epoch_seconds'])} | {statistics.median(pairs):.2f} |")
    lines.append(f"| mean | {100 * fp['final_mean']:.2f} % | {100 * bf['final_mean']:.2f} % | {gap:+.2f} | "
                 f"median {fp['median_epoch_s']:.1f} | median {bf['median_epoch_s']:.1f} | "
                 f"{statistics.median(paired):.2f} |")
    extra = {"final accuracy, bf16 - fp32 (mean of seeds)": f"{gap:+.2f} points (target: within 0.5)",
             "time per epoch, bf16 / fp32": f"{ratio:.2f} (medians); {statistics.median(paired):.2f} (median of "
                                            f"the {len(paired)} back-to-back epoch pairs)",
             "within 0.5 points": str(abs(gap) <= 0.5)}
    return {"accuracy_gap_points": gap, "ratio_time": ratio, "ratio_time_paired": statistics.median(paired),
            "within_half_point": abs(gap) <= 0.5, "extra": extra}, "\n".join(lines)


# ============================================================================================ runs
def train_interleaved(trainees: list[Trainee], data, spec: dict, seed: int, log) -> dict:
    """Train every trainee for ``spec['epochs']`` on the same batches; returns per-trainee curves and times."""
    x_tr, y_tr, x_te, y_te = data
    x_te = normalize(x_te)
    res = {t.name: {"test_accuracy": [], "epoch_seconds": [], "train_loss": []} for t in trainees}
    gen = torch.Generator().manual_seed(seed)
    n_curve = spec["n_curve"]
    for epoch in range(spec["epochs"]):
        last = epoch == spec["epochs"] - 1
        perm = torch.randperm(x_tr.shape[0], generator=gen)
        x = normalize(augment(x_tr[perm], gen))
        y = y_tr[perm]
        order = trainees if epoch % 2 == 0 else trainees[::-1]
        for t in order:
            torch.manual_seed(seed * 1000 + epoch)  # dropout masks: the same RNG state for every framework
            t0 = time.perf_counter()
            loss = t.train_epoch(x, y, spec["batch"])
            dt = time.perf_counter() - t0
            hits = t.hits(x_te if last else x_te[:n_curve], y_te if last else y_te[:n_curve])
            r = res[t.name]
            r["epoch_seconds"].append(dt)
            r["train_loss"].append(loss)
            r["test_accuracy"].append(float(hits[:n_curve].float().mean()))
            if last:
                r["final_test_accuracy"] = float(hits.float().mean())
            log(f"  seed {seed} epoch {epoch + 1}/{spec['epochs']} {t.name:16s} loss {loss:.4f} test "
                f"{100 * r['test_accuracy'][-1]:5.2f} % ({n_curve} images)"
                + (f", {100 * r['final_test_accuracy']:5.2f} % (all {len(hits)})" if last else "")
                + f"  {dt:7.1f} s")
    return res


def summarize(runs: dict) -> dict:
    """``runs[framework][seed]`` → mean/sd of the final accuracy, median epoch time."""
    out = {}
    for fw, by_seed in runs.items():
        finals = [r["final_test_accuracy"] for r in by_seed.values()]
        times = [t for r in by_seed.values() for t in r["epoch_seconds"]]
        curves = np.array([r["test_accuracy"] for r in by_seed.values()])
        out[fw] = {"final_mean": statistics.mean(finals), "final_sd": statistics.pstdev(finals),
                   "finals": finals, "median_epoch_s": statistics.median(times),
                   "mean_curve": curves.mean(0).tolist(), "params": None}
    return out


def markdown(kind: str, summary: dict, spec: dict, info: dict, extra: dict) -> str:
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in info["bf16_flags"].items())
    peer = f", SpikingJelly {info['spikingjelly']}" if "spikingjelly" in info else ""
    lines = [f"**{kind}** — {info['date']}, {info['machine']['cpu']} (lscpu: {flags}), torch "
             f"{info['machine']['torch']}, {info['threads']} threads{peer}; CIFAR-10 subset "
             f"{spec['n_train']:,} train / {spec['n_test']:,} test images (stratified, data seed "
             f"{spec['data_seed']}), T={spec['T']}, batch {spec['batch']}, {spec['epochs']} epochs, seeds "
             f"{spec['seed_list']}; final accuracy on all {spec['n_test']:,} test images, per-epoch curve (mean over "
             f"seeds) on the first {spec['n_curve']:,}", ""]
    epochs = " | ".join(f"ep {i + 1}" for i in range(spec["epochs"]))
    lines += [f"| network | params | final test acc. (mean ± sd) | per seed | time / epoch (median) | {epochs} |",
              "|---|---|---|---|---|" + "---|" * spec["epochs"]]
    for name, s in summary.items():
        curve = " | ".join(f"{100 * a:.1f}" for a in s["mean_curve"])
        per = ", ".join(f"{100 * a:.1f}" for a in s["finals"])
        lines.append(f"| {name} | {s['params']:,} | {100 * s['final_mean']:.2f} ± {100 * s['final_sd']:.2f} % | "
                     f"{per} | {s['median_epoch_s']:.1f} s | {curve} |")
    for k, v in extra.items():
        lines.append(f"\n{k}: {v}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny subset and network, 1 seed, 2 epochs (<= 5 min)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--recipes", action="store_true",
                      help="compare the cifar_snn and cifar_spaic_ref recipes (spaic_train only) instead")
    mode.add_argument("--precision-compare", action="store_true",
                      help="train spaic_train's network in float32 and in bf16-mixed (CPU autocast) instead; "
                           "'not measured' on a CPU without avx512_bf16")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg"))
    ap.add_argument("--data-seed", type=int, default=0)
    for key in ("n_train", "n_test", "n_curve", "width", "hidden", "T", "batch", "epochs", "seeds"):
        ap.add_argument(f"--{key.replace('_', '-')}", type=int, default=None)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="the seeds are first-seed, first-seed + 1, ... (--seeds of them)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None,
                    help="default benchmarks/results/learning.json (--recipes: learning_recipes.json, "
                         "--precision-compare: learning_precision.json)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    spec = dict(QUICK if args.quick else FULL)
    for key in spec:
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    spec["n_curve"] = min(spec["n_curve"], spec["n_test"])
    spec["data_seed"] = args.data_seed
    spec["seed_list"] = list(range(args.first_seed, args.first_seed + spec["seeds"]))

    def log(msg):
        print(msg, flush=True)

    import importlib.metadata as md

    flags = cpu_flags()
    info = {"date": datetime.date.today().isoformat(), "machine": machine_info(), "threads": torch.get_num_threads(),
            "bf16_flags": bf16_flags(flags), "spaic_train": md.version("spaic_train"),
            "command": " ".join(["python", "benchmarks/learning.py", *(argv if argv is not None else sys.argv[1:])])}
    kind = "cifar_snn vs cifar_spaic_ref (spaic_train)" if args.recipes else \
        "bf16-mixed vs float32 (spaic_train)" if args.precision_compare else "learning parity"
    name = "learning_recipes.json" if args.recipes else "learning_precision.json" if args.precision_compare \
        else "learning.json"
    path = Path(args.json or HERE / "results" / name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.precision_compare and bf16_unmeasured(flags):
        log(bf16_unmeasured(flags))
        log(f"CPU {info['machine']['cpu']}; lscpu flags: {info['bf16_flags']}")
        path.write_text(json.dumps({"info": info, "measured": False, "reason": bf16_unmeasured(flags)}, indent=1))
        log(f"JSON: {path}")
        return 0
    if not args.precision_compare:
        import spikingjelly  # noqa: F401 - version below

        info["spikingjelly"] = md.version("spikingjelly")
    from spaic_train.neurons import load_compiled_kernels

    load_compiled_kernels("cpu")
    t_start = time.perf_counter()
    data = load_subset(args.data, spec["n_train"], spec["n_test"], args.data_seed)
    log(f"data: {spec['n_train']} train / {spec['n_test']} test images, classes per split "
        f"{torch.bincount(data[1]).tolist()} / {torch.bincount(data[3]).tolist()}")
    runs: dict = {}
    params: dict = {}
    checks = []
    for seed in spec["seed_list"]:
        torch.manual_seed(seed)
        if args.recipes:
            trainees = []
            for recipe, mv in RECIPE_VARS[args.quick].items():
                torch.manual_seed(seed)
                t, _ = build_ours(spec, spec["epochs"], recipe, mv)
                t.name = f"{recipe} ({', '.join(f'{k}={v}' for k, v in mv.items())})"
                trainees.append(t)
        elif args.precision_compare:
            trainees = build_precision_pair(spec, seed)
        else:
            ours, cfg = build_ours(spec, spec["epochs"], model_vars=parity_overrides(spec))
            sj = build_spikingjelly(ours, cfg, spec, spec["epochs"])
            check = check_same_outputs(ours, sj, normalize(data[0][:spec["batch"]]))
            checks.append(check)
            log(f"seed {seed}: same-input check {check}")
            if check["spike_agreement"] < 0.9999 or check["max_logit_diff"] > 1e-6:
                raise SystemExit(f"learning.py: the two networks disagree before training: {check}")
            trainees = [ours, sj]
        for t in trainees:
            params[t.name] = sum(p.numel() for p in t.net.parameters() if p.requires_grad)
        res = train_interleaved(trainees, data, spec, seed, log)
        for name, r in res.items():
            runs.setdefault(name, {})[seed] = r
    summary = summarize(runs)
    for name in summary:
        summary[name]["params"] = params[name]
    extra, per_seed = {}, ""
    if args.precision_compare:
        figures, per_seed = precision_report(runs, summary)
        extra = figures.pop("extra")
        summary.update(figures)
    elif not args.recipes:
        o, s = summary[OURS], summary[SJ]
        ratio = o["median_epoch_s"] / s["median_epoch_s"]
        gap = 100 * (o["final_mean"] - s["final_mean"])
        extra = {"time per epoch, spaic_train / SpikingJelly": f"{ratio:.2f} (target <= 0.8)",
                 "final accuracy, spaic_train - SpikingJelly": f"{gap:+.2f} points (target >= -0.5)",
                 "same-input check before training": ", ".join(
                     f"spikes {c['spike_agreement']:.5f}, max logit diff {c['max_logit_diff']:.1e}" for c in checks),
                 "targets met": str(ratio <= 0.8 and gap >= -0.5)}
        summary["ratio_time"], summary["accuracy_gap_points"] = ratio, gap
    info["total_minutes"] = (time.perf_counter() - t_start) / 60
    table = markdown(kind, {k: v for k, v in summary.items() if isinstance(v, dict)}, spec, info, extra)
    if per_seed:
        table += "\n\n" + per_seed
    print("\n" + table + f"\n\ntotal {info['total_minutes']:.1f} min; command: {info['command']}")
    path.write_text(json.dumps({"info": info, "spec": spec, "checks": checks, "runs": runs, "summary": summary,
                                "extra": extra, "markdown": table}, indent=1) + "\n")
    log(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
