"""``spaic_train.convert``: a trained ANN (``torch.nn.Module``) → a spiking Keras ``Model`` of IF neurons."""

from __future__ import annotations

import math
from typing import Optional

from torch import nn

from ..keras import Model
from .bias_calibration import CALIBRATION_METHODS, calibrate_biases
from .build import build_model
from .calibration import ActivationStats, as_input_of, iter_batches
from .plan import ConversionError, NetworkPlan
from .trace import MAXPOOL_MODES, trace

__all__ = ["THRESHOLD_METHODS", "convert"]

#: how thresholds are set: the trained clip where a layer has one, else the percentile ('auto'), or one rule for all
THRESHOLD_METHODS = ("auto", "percentile", "max", "clip")


def _check_calibration(calibrate, calibrate_steps) -> None:
    if calibrate is not None and calibrate not in CALIBRATION_METHODS:
        raise ValueError(f"convert: calibrate must be None (no calibration after the conversion) or one of "
                         f"{CALIBRATION_METHODS}, got {calibrate!r}")
    if calibrate_steps is not None:
        if isinstance(calibrate_steps, bool) or not isinstance(calibrate_steps, int) or calibrate_steps < 1:
            raise ValueError(f"convert: calibrate_steps must be a positive int (the T to calibrate for), got "
                             f"{calibrate_steps!r}")
        if calibrate is None:
            raise ValueError(f"convert: calibrate_steps={calibrate_steps} needs calibrate='bias' (no calibration "
                             "is done without it)")


def _check(ann, threshold, percentile, time_steps, maxpool, reset, readout, v_init):
    if not isinstance(ann, nn.Module):
        raise TypeError(f"convert: ann must be a torch.nn.Module, got {type(ann).__name__}")
    if threshold not in THRESHOLD_METHODS:
        raise ValueError(f"convert: threshold must be one of {THRESHOLD_METHODS}, got {threshold!r}")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
        raise ValueError(f"convert: percentile must be a number in (0, 100], got {percentile!r}")
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise ValueError(f"convert: time_steps must be a positive int, got {time_steps!r}")
    if maxpool not in MAXPOOL_MODES:
        raise ValueError(f"convert: maxpool must be one of {MAXPOOL_MODES}, got {maxpool!r}")
    if reset not in ("soft", "hard"):
        raise ValueError(f"convert: reset must be 'soft' (by subtraction) or 'hard' (to zero), got {reset!r}")
    if readout not in ("current", "spikes"):
        raise ValueError(f"convert: readout must be 'current' or 'spikes', got {readout!r}")
    if v_init != "auto" and (isinstance(v_init, bool) or not isinstance(v_init, (int, float))
                             or not 0.0 <= v_init < 1.0):
        raise ValueError(f"convert: v_init must be 'auto' or a fraction of each layer's threshold in [0, 1) (0.5: the "
                         f"membrane starts half-way to the threshold), got {v_init!r}")


def _set_thresholds(plan: NetworkPlan, stats: ActivationStats, method: str, percentile: float) -> None:
    for layer in plan.layers:
        if method in ("auto", "clip") and layer.clip is not None and not layer.readout:
            value = layer.clip
        elif method == "clip" and not layer.readout:
            raise ConversionError(f"convert: threshold='clip' needs a trained clip value, but the activation "
                                  f"{layer.path!r} has none (use QCFS, ReLU6 or Hardtanh(0, m), or "
                                  "threshold='percentile')")
        elif method == "max":
            value = stats.maximum[layer.node]
        else:
            value = stats.percentile(layer.node, percentile)
            if value <= 0:  # a nearly silent layer: its largest value is the only scale it has
                value = stats.maximum[layer.node]
        layer.threshold = float(value) if math.isfinite(value) and value > 0 else 1.0


def convert(ann: nn.Module, calibration_data, *, threshold: str = "auto", percentile: float = 99.9,
            time_steps: int = 32, maxpool: Optional[str] = None, reset: Optional[str] = None,
            readout: Optional[str] = None, v_init=None, nir_compatible: bool = False,
            calibrate: Optional[str] = None, calibrate_steps: Optional[int] = None, batch_size: int = 256,
            max_samples: Optional[int] = None) -> Model:
    """Convert a trained ANN into a spiking Keras :class:`~spaic_train.Model` of IF neurons (rate coding).

    Args:
        ann: a ``torch.nn.Module`` that ``torch.fx`` can trace (an ``nn.Sequential`` or a ``forward`` without
            data-dependent control flow) mapping ``[B, *shape]`` to logits.  Parts: ``Conv2d``, ``Linear``,
            ``BatchNorm1d/2d`` (folded into the weight op before it), ``ReLU``, ``ReLU6``, ``Hardtanh(0, m)``,
            ``clamp(0, m)``, :class:`QCFS`, ``AvgPool2d``, ``AdaptiveAvgPool2d`` / ``x.mean((2, 3))`` (global
            average pooling), ``MaxPool2d``, ``Flatten`` / ``view`` / ``reshape``, ``Dropout`` / ``Identity``
            (removed) and residual additions (a weight-op path plus an identity or 1×1-conv shortcut), as modules
            or as ``torch.nn.functional`` calls.  Anything else raises a :class:`ConversionError` naming the part,
            its path in the network and the supported parts.
        calibration_data: inputs for the activation statistics: a tensor ``[N, *shape]``, ``(x, y)``, a
            ``Dataset`` or a ``DataLoader`` (a few hundred training images suffice).
        threshold: ``'auto'`` (the trained clip of QCFS / ReLU6 / Hardtanh layers, the percentile elsewhere),
            ``'percentile'``, ``'max'`` (largest activation) or ``'clip'`` (trained clips only).
        percentile: the percentile (of all values of a layer's activation) for ``'percentile'``.
        time_steps: default simulation steps ``T`` of the returned model.
        maxpool: ``'current'`` (default): a max pooling right after an activation moves before the neurons (max
            and a monotone activation commute), so the IF neurons integrate the window's largest input current each
            step (exact for constant currents; otherwise it overestimates by the current's step-to-step spread);
            where that is impossible the spikes are max-pooled (``'spikes'``: a window emits a spike when any of its
            neurons does, which overestimates the rate).  ``'avg'`` replaces max by average pooling (for NIR).
        reset: ``'soft'`` (default; reset by subtraction, no rate error) or ``'hard'`` (reset to 0, for NIR).
        readout: ``'current'`` (default; the output layer integrates the logits' current and the model returns
            its mean over ``T``) or ``'spikes'`` (IF output neurons with a calibrated threshold, for NIR).
        v_init: where each IF layer's membrane starts, as a fraction of its threshold ``λ``.  ``'auto'`` (default):
            a QCFS layer starts at its shift ``φ·λ`` (``λ/2``; Bu et al. 2022: its spike count is then the
            quantized activation at every ``T`` for a constant input), every other layer at ``λ/2`` too (its rate
            rounds instead of flooring the activation).  A number ``f`` in
            ``[0, 1)``: every IF layer starts at ``f·λ``, and a QCFS layer's remaining shift ``(φ − f)·λ`` is added
            to its bias as ``(φ − f)·λ/L`` per step (``f = 0``: all of it, exact for the first layer at ``T = L``
            only).  NIR has no initial membrane, so ``nir_compatible=True`` means ``v_init=0``.
        nir_compatible: shorthand for ``reset='hard', maxpool='avg', readout='spikes', v_init=0``, a variant that
            :meth:`~spaic_train.Model.to_nir` can export (NIR has no soft reset, no max pooling and no initial
            membrane).
        calibrate: ``None`` (default) or ``'bias'``: after the conversion, run the SNN at ``calibrate_steps`` on
            the calibration data and, layer by layer in network order, add to each layer's per-step bias the
            per-channel mean of the ANN's (clipped) activation minus the layer's ``threshold × rate`` (Li et al.,
            ICML 2021; see :mod:`.bias_calibration`).  It costs one SNN run over the calibration data per layer.
        calibrate_steps: the ``T`` to calibrate for (default: ``time_steps``); the correction is tuned to it.
        batch_size, max_samples: calibration batch size and the most samples read from ``calibration_data``.

    Returns:
        A ``Model`` (``Input(encoder='direct')`` → ``Conv2dSyn`` / ``Full`` layers of ``'if'`` neurons → readout)
        that works with ``compile`` / ``fit`` / ``evaluate`` / ``predict`` / ``save``; ``model.conversion`` holds
        each layer's threshold.  The ANN is left unchanged.
    """
    defaults = {"maxpool": "current", "reset": "soft", "readout": "current", "v_init": "auto"}
    nir = {"maxpool": "avg", "reset": "hard", "readout": "spikes", "v_init": 0}
    given = {"maxpool": maxpool, "reset": reset, "readout": readout, "v_init": v_init}
    if nir_compatible:
        clash = {k: v for k, v in given.items() if v is not None and v != nir[k]}
        if clash:
            raise ValueError(f"convert: nir_compatible=True needs {', '.join(f'{k}={nir[k]!r}' for k in clash)}, "
                             f"got {', '.join(f'{k}={v!r}' for k, v in clash.items())}")
    opts = {k: (v if v is not None else (nir if nir_compatible else defaults)[k]) for k, v in given.items()}
    _check(ann, threshold, percentile, time_steps, **opts)
    _check_calibration(calibrate, calibrate_steps)
    was_training = ann.training
    ann.eval()
    try:
        sample = next(iter_batches(calibration_data, batch_size), None)
        if sample is None:
            raise ValueError("convert: calibration_data holds no samples")
        sample = as_input_of(ann, sample)
        plan, gm = trace(ann, sample[:2], opts["maxpool"])
        stats = ActivationStats(layer.node for layer in plan.layers)
        stats.collect(gm, calibration_data, batch_size, max_samples)
        _set_thresholds(plan, stats, threshold, percentile)
        model = build_model(plan, time_steps, reset=opts["reset"], readout=opts["readout"], v_init=opts["v_init"],
                            every_bias=calibrate is not None)
        model.conversion = {"thresholds": {layer.path: layer.threshold for layer in plan.layers if not layer.readout},
                            "threshold": threshold, "percentile": percentile, **opts,
                            "calibration_samples": stats.samples, "calibrate": calibrate}
        if calibrate is not None:
            steps = time_steps if calibrate_steps is None else calibrate_steps
            model.conversion["calibrate_steps"] = steps
            model.conversion["bias_corrections"] = calibrate_biases(
                model, plan, gm, calibration_data, steps, readout=opts["readout"], batch_size=batch_size,
                max_samples=max_samples)
    finally:
        ann.train(was_training)
    return model
