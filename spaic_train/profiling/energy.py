"""Energy per operation: the constants that turn operation counts into an energy estimate."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["EnergyModel", "HOROWITZ_45NM"]


@dataclass(frozen=True)
class EnergyModel:
    """Energy of one accumulate (AC, a spike reaching a synapse) and one multiply-accumulate (MAC, analog input).

    The default is the estimate every SNN paper quotes: 32-bit floating point in a 45 nm CMOS process,
    an add 0.9 pJ and a multiply 3.7 pJ, so a MAC 4.6 pJ (M. Horowitz, "Computing's energy problem (and what we
    can do about it)", ISSCC 2014).  It counts arithmetic only — no memory access, no neuron updates — so it
    compares architectures, not chips.

    Args:
        pj_per_ac: energy of one accumulate in picojoules (``> 0``).
        pj_per_mac: energy of one multiply-accumulate in picojoules (``> 0``).
        source: where the numbers come from (shown under the profile table).
    """

    pj_per_ac: float = 0.9
    pj_per_mac: float = 4.6
    source: str = "45 nm CMOS, 32-bit float (Horowitz, ISSCC 2014)"

    def __post_init__(self):
        for name in ("pj_per_ac", "pj_per_mac"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or math.isinf(v):
                raise ValueError(f"EnergyModel: {name} must be a finite number of picojoules > 0, got {v!r}")

    def microjoules(self, acs: float, macs: float = 0.0) -> float:
        """Energy in µJ of ``acs`` accumulates and ``macs`` multiply-accumulates."""
        return (acs * self.pj_per_ac + macs * self.pj_per_mac) * 1e-6


#: the default energy model (0.9 pJ per AC, 4.6 pJ per MAC)
HOROWITZ_45NM = EnergyModel()
