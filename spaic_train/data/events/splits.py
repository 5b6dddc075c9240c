"""Canonical, recorded splits.

* Releases that ship their splits keep them: SSC (train/valid/test), DVS Gesture, SHD, N-MNIST (train/test); where
  there is no validation partition it is carved from the training one, stratified and seeded
  (:func:`spaic_train.data.split_indices`, ``data.val_fraction``, ``data.seed``).
* CIFAR10-DVS ships no split.  ``tebn`` (default): files 0–99 of each class (by the numeric index in
  ``cifar10_<class>_<i>``) are the test set, 100–999 the training set — TEBN's split, which SpikingJelly 2.0
  ships as ``CIFAR10DVSTEBNSplit``.  ``plif``: the first 90 % of each class (by numeric index) train, the last
  10 % test, as in the PLIF paper (Fang et al. 2021).
* N-Caltech101 ships no split.  ``first20``: in each class, the first ``ceil(0.2·n)`` recordings by numeric index
  (``image_0001`` …) are the test set, the rest train.

:func:`split_hash` hashes the ordered sample ids (paths relative to ``data.root``) of train, val and test: two runs
with the same hash used the same split, whatever machine or clone directory they ran in.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from .layouts import Sample

CIFAR10_DVS_SPLITS = ("tebn", "plif")
NCALTECH101_SPLITS = ("first20",)


def per_class_rule(samples: Sequence[Sample], rule: str) -> tuple[list[int], list[int]]:
    """``(train positions, test positions)`` of ``samples`` under a per-class rule (module docstring)."""
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group, []).append(i)
    train, test = [], []
    for members in groups.values():
        members = sorted(members, key=lambda i: samples[i].index)
        n = len(members)
        if rule == "tebn":
            test += [i for i in members if samples[i].index < 100]
            train += [i for i in members if samples[i].index >= 100]
        elif rule == "plif":
            k = int(math.floor(0.9 * n))
            train += members[:k]
            test += members[k:]
        elif rule == "first20":
            k = int(math.ceil(0.2 * n))
            test += members[:k]
            train += members[k:]
        else:
            raise ValueError(f"unknown split rule {rule!r}")
    return sorted(train), sorted(test)


@runtime_checkable
class RecordedSplit(Protocol):
    """A datamodule whose split can be recorded: the CLI writes ``split_hash()`` into ``metrics.json``."""

    def split_hash(self) -> str: ...


def split_hash(split_ids: dict[str, Sequence[str]]) -> str:
    """sha256 (hex) of ``{"train": [...], "val": [...], "test": [...]}`` sample ids, in loader order before
    shuffling (the index order of the split)."""
    doc = {k: list(split_ids.get(k, [])) for k in ("train", "val", "test")}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def take(seq: Sequence, idx: Sequence[int] | np.ndarray) -> list:
    return [seq[int(i)] for i in idx]
