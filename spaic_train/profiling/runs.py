"""The cost numbers of a training run: what ``python train.py`` adds to ``metrics.json``."""

from __future__ import annotations

from typing import Any, Optional

from .energy import EnergyModel
from .report import ProfileResult, profile

__all__ = ["RUN_PROFILE_SAMPLES", "profile_datamodule", "run_metrics"]

#: samples of the validation split a recipe run is profiled on (whole batches, at least one)
RUN_PROFILE_SAMPLES = 512


def profile_datamodule(model, datamodule, max_samples: int = RUN_PROFILE_SAMPLES,
                       energy: Optional[EnergyModel] = None) -> Optional[ProfileResult]:
    """Profile ``model`` on the first ``max_samples`` validation samples of ``datamodule`` (its test split when
    there is no validation split); ``None`` when it has neither."""
    for split in ("val", "test"):
        if getattr(datamodule, f"{split}_set", None) is None:
            continue
        return profile(model, getattr(datamodule, f"{split}_dataloader")(), max_samples=max_samples, energy=energy)
    return None


def run_metrics(model, datamodule: Any, max_samples: int = RUN_PROFILE_SAMPLES) -> dict[str, float]:
    """``{'sops_per_sample', 'macs_per_sample', 'energy_uj_per_sample', 'ann_energy_uj_per_sample'}`` of a
    trained model on its validation data (see :func:`profile_datamodule`); empty without evaluation data."""
    result = profile_datamodule(model, datamodule, max_samples)
    return {} if result is None else result.metrics()
