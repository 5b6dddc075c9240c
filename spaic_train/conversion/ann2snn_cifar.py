"""Recipe ``ann2snn_cifar``: train a QCFS ResNet-style ANN on a CIFAR-10 subset, convert it, report accuracy over T.

One command for low-T conversion (a module entry rather than a ``train.py`` recipe: ``train.py`` trains spiking
models, and this recipe trains an ANN first)::

    python -m spaic_train.conversion.ann2snn_cifar --data ../shared/data/cifar10-jpeg --out outputs/ann2snn

trains the width-8 ResNet with QCFS activations (``--levels`` L = 4) on 10,000 training images for 15 epochs, then
converts it once per ``T`` in ``--time-steps``, each conversion bias-calibrated for its ``T`` on 512 training images
(``convert(calibrate='bias', calibrate_steps=T)``; ``--calibrate none`` converts once, uncalibrated, and evaluates
that one model at every ``T``).  It writes ``ann.pt`` (the ANN's state dict), the converted models
(``snn_T<T>.pt`` per ``T``, or ``snn.pt`` uncalibrated; ``st.load_model``), ``report.json``, ``report.md`` and
``report.png`` (accuracy vs T).  ``--activation relu`` trains a plain ReLU network instead (converted with the
99.9th-percentile thresholds).  :func:`resnet_ann` and :func:`train_ann` are reused by ``benchmarks/conversion.py``
(the data come from :mod:`spaic_train.data.cifar_arrays`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.cifar_arrays import augment, load_cifar_subset, normalize
from .api import convert
from .qcfs import QCFS
from .report import conversion_report

__all__ = ["BasicBlock", "main", "resnet_ann", "train_ann"]


def _act(activation: str, levels: int) -> nn.Module:
    if activation == "qcfs":
        return QCFS(levels=levels)
    if activation == "relu":
        return nn.ReLU()
    raise ValueError(f"ann2snn_cifar: activation must be 'relu' or 'qcfs', got {activation!r}")


class BasicBlock(nn.Module):
    """``act(BN(conv3x3(act(BN(conv3x3(x))))) + shortcut(x))``; the shortcut is the identity or BN(conv1x1)."""

    def __init__(self, cin: int, cout: int, stride: int, activation: str = "relu", levels: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = _act(activation, levels)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = _act(activation, levels)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(h)) + self.shortcut(x))


def resnet_ann(width: int = 16, activation: str = "relu", levels: int = 8, num_classes: int = 10) -> nn.Sequential:
    """A small ResNet for 3x32x32 images: conv-BN-act stem (``width``), three basic blocks (``width``,
    ``2·width`` stride 2, ``4·width`` stride 2), global average pooling, a linear readout."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), _act(activation, levels),
        BasicBlock(width, width, 1, activation, levels),
        BasicBlock(width, 2 * width, 2, activation, levels),
        BasicBlock(2 * width, 4 * width, 2, activation, levels),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, num_classes))


def train_ann(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int = 128,
              lr: float = 0.05, weight_decay: float = 5e-4, seed: int = 0, prepare=None, log=print) -> nn.Module:
    """SGD (momentum 0.9, cosine schedule) with cross-entropy; ``prepare(x_batch, generator)`` turns a raw batch
    into the network's input (augmentation, normalisation).  Returns ``model`` in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for epoch in range(epochs):
        t0, total, hits = time.perf_counter(), 0.0, 0
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            xb = x[idx] if prepare is None else prepare(x[idx], gen)
            out = model(xb)
            loss = F.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            hits += int((out.argmax(1) == y[idx]).sum())
        log(f"  epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}, train accuracy {100 * hits / len(x):.2f} %, "
            f"{time.perf_counter() - t0:.0f} s")
    return model.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m spaic_train.conversion.ann2snn_cifar", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/cifar10-jpeg", help="CIFAR-10 JPEG tars or folder tree")
    p.add_argument("--out", default="outputs/ann2snn_cifar", help="output folder")
    p.add_argument("--activation", choices=("qcfs", "relu"), default="qcfs")
    p.add_argument("--levels", type=int, default=4, help="QCFS quantization levels L")
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--time-steps", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    p.add_argument("--calibrate", choices=("each", "none"), default="each",
                   help="'each': one conversion per T, bias-calibrated for it; 'none': one uncalibrated conversion")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xtr, ytr, xte, yte = load_cifar_subset(args.data, args.n_train, args.n_test, args.seed)
    torch.manual_seed(args.seed)
    ann = resnet_ann(args.width, args.activation, args.levels)
    print(f"ann2snn_cifar: training a {args.activation} ResNet (width {args.width}) on {len(xtr)} images")
    train_ann(ann, xtr, ytr, args.epochs, lr=args.lr, seed=args.seed, prepare=lambda xb, g: normalize(augment(xb, g)))
    torch.save(ann.state_dict(), out / "ann.pt")
    calib = normalize(xtr[:512])
    if args.calibrate == "each":  # a model per T, calibrated for the T it runs at
        snn = {T: convert(ann, calib, time_steps=T, calibrate="bias", calibrate_steps=T) for T in args.time_steps}
        saved = {f"snn_T{T}.pt": model for T, model in snn.items()}
    else:
        snn = convert(ann, calib, time_steps=max(args.time_steps))
        saved = {"snn.pt": snn}
    report = conversion_report(snn, ann, (normalize(xte), yte), time_steps=args.time_steps, batch_size=200,
                               plot=out / "report.png")
    for name, model in saved.items():
        model.save(out / name, include_optimizer=False)
    (out / "report.md").write_text(report.table() + "\n")
    (out / "report.json").write_text(json.dumps({"ann_accuracy": report.ann_accuracy,
                                                 "accuracy": report.accuracy, "samples": report.samples,
                                                 "args": vars(args)}, indent=2))
    print(report)
    print(f"ann2snn_cifar: wrote {out}/ann.pt, {', '.join(saved)}, report.md, report.json, report.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
