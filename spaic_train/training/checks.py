"""Checks of the data against the network, run once at the start of ``fit`` / ``evaluate`` / ``predict`` (the
Keras ``Model`` methods forward to those, so they run them too): input shapes against the network's single
encoder, and labels against its output size.  Array and ``TensorDataset`` data are checked whole here; labels of
streamed data (DataLoaders, DataModules) are checked on the first batch by :class:`~spaic_train.training.SNNModule`
with the same :func:`check_labels`.

What the checks need from a network is written down as
:class:`~spaic_train.training.protocols.CheckedNetwork`: a core
:class:`~spaic_train.Network` (and so every Keras model) provides it; a module that does not (a plain
``nn.Module``) is not checked here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

import torch
from torch import Tensor

from .data import as_target_tensor, class_index_labels, to_tensor
from .losses import check_class_indices
from .protocols import CheckedNetwork, network_of

__all__ = [
    "array_labels", "check_data", "check_inputs", "check_labels", "check_targets", "output_size",
]

#: decoders whose output has one value per class of a 1-D output group (labels are checked against it)
CLASS_DECODERS = ("spike_counts", "spike_rate", "sequence")


def checked_network(module: Any) -> Optional[CheckedNetwork]:
    """The network inside ``module`` (an ``SNNModule``'s ``network``, or ``module`` itself) when it can be checked."""
    net = network_of(module)
    return net if isinstance(net, CheckedNetwork) else None


def _format_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def output_size(net: CheckedNetwork) -> Optional[int]:
    """Number of classes: the size of the first decoder's target group when it is 1-D and the decoder gives one
    value per class (``spike_counts``, ``spike_rate``, ``sequence``), else ``None`` (not checked)."""
    decoders = list(net.decoders)
    if not decoders or decoders[0].coding not in CLASS_DECODERS:
        return None
    shape = tuple(decoders[0].target.shape)
    return shape[0] if len(shape) == 1 else None


def check_inputs(net: CheckedNetwork, x: Tensor, what: str = "x") -> None:
    """``x`` ``[N, *shape]`` (static) or ``[N, T, *shape]`` (per-sample sequences) must match the shape of the
    network's single encoder (networks with several encoders are not checked); static inputs need
    ``time_steps``."""
    encoders = list(net.encoders)
    if len(encoders) != 1:
        return
    enc = encoders[0]
    want = tuple(enc.shape)
    got = tuple(x.shape)
    if enc.coding == "sequence":  # batch-first spike trains / frames, transposed per batch by the encoder
        if len(got) != len(want) + 2 or got[2:] != want:
            dims = ", ".join(str(s) for s in want)
            raise ValueError(f"{net.label}: {what} has shape {list(got)}, but {enc.label} (encoder 'sequence') "
                             f"takes arrays laid out [N, T, {dims}]: samples, time steps, then one step's "
                             f"{_format_shape(want)}")
        return
    sample = got[1:]
    if sample == want:
        if net.time_steps is None:
            raise ValueError(f"{net.label}: static input {what} of shape {list(got)} needs time_steps; build the "
                             "network with time_steps=T (or give sequences [N, T, *shape])")
        return
    if sample[1:] == want:
        return
    dims = ", ".join(map(str, want))
    raise ValueError(f"{net.label}: {what} has shape {list(got)}, so samples have shape {list(sample)}, but the "
                     f"network's input {enc.label} (shape {_format_shape(want)}) expects samples of shape "
                     f"{list(want)}, i.e. {what} of shape [N, {dims}] (or [N, T, {dims}] for sequences)")


def check_labels(y: Any, num_classes: int) -> None:
    """Raise a ``ValueError`` if class-index labels ``y`` are outside ``[0, num_classes)`` (float targets of
    shape ``[N, C]`` must have ``C == num_classes``)."""
    t = as_target_tensor(y)
    if torch.is_floating_point(t):
        if t.dim() >= 2 and t.shape[-1] != num_classes:
            raise ValueError(f"float targets have {t.shape[-1]} classes but the output has {num_classes}")
        return
    check_class_indices(t, num_classes)


def check_targets(net: CheckedNetwork, y: Tensor, what: str = "y") -> None:
    """Labels ``y`` against the network's output size (see :func:`output_size`), naming the output group."""
    n = output_size(net)
    if n is None:
        return
    try:
        check_labels(y, n)
    except ValueError as e:
        raise ValueError(f"{net.label}: {what}: {e} (output layer {net.decoders[0].target.label} has {n} "
                         f"neurons)") from None


def array_labels(module: Any, y: Any, what: str) -> Any:
    """Array labels checked (and float class indices cast to ``int64``) before anything is built, so that a
    bad dtype is reported naming the network; Datasets, DataLoaders and ``None`` pass through."""
    if y is None or isinstance(y, (torch.utils.data.Dataset, torch.utils.data.DataLoader)):
        return y
    net = checked_network(module)
    owner = net.label if net is not None else type(network_of(module)).__name__
    # the check sees the labels' own dtype (float64 is reported as float64), then they are cast for training
    return as_target_tensor(class_index_labels(to_tensor(y, what), f"{owner}: {what}"), what)


def _tensors(loader: Any) -> Optional[torch.utils.data.TensorDataset]:
    """The ``TensorDataset`` behind ``loader`` (a DataLoader or a dataset; through a ``Subset``, the whole data
    set: a validation split is checked with the data it was split from), else ``None``."""
    ds = getattr(loader, "dataset", loader)
    if isinstance(ds, torch.utils.data.Subset):
        ds = ds.dataset
    return ds if isinstance(ds, torch.utils.data.TensorDataset) else None


def check_data(module: Any, parts: Iterable[tuple[Any, str, str]]) -> None:
    """Check each ``(loader, x name, y name)`` of array / ``TensorDataset`` data against the network of
    ``module``: input shapes (:func:`check_inputs`), then labels (:func:`check_targets`)."""
    net = checked_network(module)
    if net is None:
        return
    seen, checked = set(), []
    for loader, wx, wy in parts:
        ds = _tensors(loader) if loader is not None else None
        if ds is not None and id(ds) not in seen:
            seen.add(id(ds))
            checked.append((ds.tensors, wx, wy))
    for tensors, wx, _ in checked:
        check_inputs(net, tensors[0], wx)
    for tensors, _, wy in checked:
        if len(tensors) >= 2:
            check_targets(net, tensors[1], wy)
