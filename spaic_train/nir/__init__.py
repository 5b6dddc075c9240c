"""Interchange with the Neuromorphic Intermediate Representation (NIR, the ``nir`` package; ``pip install
spaic_train[nir]``).  ``import spaic_train`` does not import ``nir``; this subpackage does.

* :func:`export` — a :class:`~spaic_train.Network` or Keras model → ``nir.NIRGraph``; :func:`write` saves it
  (atomically; ``nir.read`` reads it); ``model.to_nir(path)`` does both for Keras models.
* :func:`load` — a graph or ``.nir`` file → core :class:`~spaic_train.Network`.
* ``spaic_train.from_nir(path)`` — the same as a Keras functional ``Model`` (``compile``/``fit``/``save``), built
  on the Keras side (:mod:`spaic_train.keras.nir_models`): this package never imports ``spaic_train.keras``.

Mapping (one registry entry per part and direction, :mod:`spaic_train.nir.convert`):

====================================  =========================================================================
spaic_train                           NIR
====================================  =========================================================================
``Encoder``                           ``Input`` (coding in its metadata; the graph's input is the encoder's output)
``lif``, ``plif`` group               ``LIF`` (``plif``: its current τ; learnability is not in NIR)
``if`` group                          ``IF``
``full``/``sparse``/``random`` link   ``Affine`` (bias) / ``Linear``; absent synapses are zero weights; a multi-
                                      dimensional pre is ``Flatten``-ed first, as the link does
``one_to_one`` link                   ``Scale`` (``Affine`` with a diagonal weight when it has a bias)
``conv`` link                         ``Conv2d`` (stride, padding, dilation, groups; zero bias when none)
``avgpool`` / ``sumpool`` synapse     ``AvgPool2d`` / ``SumPool2d``
``flatten`` synapse                   ``Flatten``
``batchnorm`` synapse                 folded into the weight op it follows (eval statistics)
``dropout`` synapse                   nothing (the graph describes eval mode)
per-synapse delays                    one weight node per distinct delay ``d``, holding ``W ⊙ [delay == d]``, behind
                                      a ``Delay`` node of ``d`` steps (exact; import merges them back)
feedback connection                   an edge closing a cycle (it lags one step; longer delays add a ``Delay``)
decoded group                         ``Output`` (decoder name in its metadata)
====================================  =========================================================================

Not expressible (a ``ValueError`` names the part): ``reset='soft'``, ``v_init != 0`` (NIR nodes have no initial
state), ``alif``, ``izhikevich``, ``maxpool``, conv
``upscale``, a connection reading the membrane (``pre_var_name='V'``), a dense link into a multi-dimensional
group (NIR has no reshape), a batch norm not directly after the weight op.  On import: ``CubaLIF``, ``CubaLI``,
``LI``, ``I``, ``Threshold``, ``Conv1d``, per-neuron parameters that differ, two weight nodes in a row.

Time.  spaic_train steps ``H = βV + I`` (``β = exp(−Δt/τ)``, Δt and τ in ms), spikes where ``H ≥ v_th`` and
resets to ``v_reset``.  NIR's LIF is continuous, ``τ dv/dt = (v_leak − v) + r·I``, spiking where
``v > v_threshold`` and resetting to ``v_reset``; every NIR framework steps it by forward Euler with its own
``dt`` (seconds): ``v ← v + (dt/τ)(v_leak − v + r·I)``.  The graph records ``dt`` in ``metadata["dt"]``.

* Export, LIF: ``τ_NIR = dt/(1 − β)``, ``r = 1/(1 − β)`` (so Euler gives back ``βv + I``), ``v_leak = 0``,
  ``v_threshold = v_th``, ``v_reset = v_reset``.  IF: ``r = 1/dt``.  ``dt`` defaults to the network's
  ``dt`` in seconds; snnTorch's importer assumes ``dt = 1e-4``, so export with ``dt=1e-4`` for it.
* Import, LIF: ``β = 1 − dt/τ_NIR`` (τ_NIR must exceed dt), gain ``g = r·dt/τ_NIR``; the membrane is read as
  ``u = (v − v_leak)/g``, which follows ``u ← βu + I`` exactly: τ = −Δt/ln β, ``v_th = (v_threshold −
  v_leak)/g``, ``v_reset = (v_reset − v_leak)/g``, and ``u`` starts at 0 (``v`` at ``v_leak``).  IF:
  ``g = r·dt``.  A gain within 1e-5 of 1 is taken as 1 (float noise of exporters).
* Thresholds: spaic_train fires at ``H ≥ v_th``, NIR at ``v > v_threshold``: the two differ only when the
  membrane lands exactly on the threshold.
* Timing: a chain of nodes acts within the same step (no lag per layer), as in spaic_train.  An edge that
  closes a cycle reads the previous step (the convention of snnTorch's ``RLeaky`` and of ``nirtorch``'s
  executor), like spaic_train's feedback connections (``d ≥ 1``); a feedback connection of ``d`` steps is that
  edge plus a ``Delay`` of ``d − 1`` steps, any other delay ``d`` a ``Delay`` of ``d`` steps.  Which edge of a
  cycle lags follows the group order: the exporter stores it in ``metadata["order"]``; without it the importer
  orders the groups depth-first from the inputs.
"""

try:
    import nir as _nir  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("spaic_train.nir needs the 'nir' package: pip install 'spaic_train[nir]'") from e

from .exporter import export, write
from .importer import load

__all__ = ["export", "load", "write"]
