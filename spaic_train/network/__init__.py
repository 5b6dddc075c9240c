"""The engine: ``Network`` plus its encoders, decoders, monitors and execution schedule."""

from .decoders import DECODINGS, Decoder
from .encoders import ENCODINGS, Encoder
from .monitors import StateMonitor
from .network import Network

__all__ = ["DECODINGS", "ENCODINGS", "Decoder", "Encoder", "Network", "StateMonitor"]
