"""What a spiking network costs: synaptic operations (SOPs), MACs, firing rates and an energy estimate.

``st.profile(model, data)`` runs the model on real data and counts, per layer, the accumulates its spikes
cause (exactly, from the spikes: see :mod:`spaic_train.profiling.counting`), the MACs of analog-input layers,
firing rates and silent neurons, and turns them into energy with an :class:`EnergyModel`
(0.9 pJ per AC, 4.6 pJ per MAC by default: 45 nm, Horowitz 2014)::

    result = st.profile(model, x_test)
    print(result)                        # the table
    result.sops, result.energy_uj        # per sample
    result.energy_ratio                  # equivalent ANN energy / SNN energy
"""

from .callback import EnergyMonitor
from .counting import (
    ConnectionCount,
    count_connection,
    present_synapses,
    sum_over_batch,
    synapse_count,
    weight_op_index,
)
from .energy import HOROWITZ_45NM, EnergyModel
from .report import ConnectionProfile, LayerProfile, ProfileResult, SpikeCounter, profile, recorded_vars

__all__ = ["ConnectionCount", "ConnectionProfile", "EnergyModel", "EnergyMonitor", "HOROWITZ_45NM", "LayerProfile",
           "ProfileResult", "SpikeCounter", "count_connection", "present_synapses", "profile", "recorded_vars",
           "sum_over_batch", "synapse_count", "weight_op_index"]
