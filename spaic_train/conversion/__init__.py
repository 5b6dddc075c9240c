"""ANN → SNN conversion: ``st.convert(ann, calibration_data)`` → a spiking Keras ``Model``, and
``st.conversion_report(snn, ann, data, time_steps=[...])`` → accuracy over ``T`` next to the ANN's.

Parts: :mod:`.trace` (``torch.fx`` graph → :mod:`.plan`, one converter per part in :mod:`.converters`),
:mod:`.calibration` (thresholds), :mod:`.build` (the Keras model), :mod:`.qcfs` (the training-aware activation),
:mod:`.report`.
"""

from .api import THRESHOLD_METHODS, convert
from .converters import FUNCTION_CONVERTERS, MODULE_CONVERTERS
from .plan import ConversionError
from .qcfs import QCFS, qcfs
from .report import ConversionReport, conversion_report

__all__ = ["FUNCTION_CONVERTERS", "MODULE_CONVERTERS", "QCFS", "THRESHOLD_METHODS", "ConversionError",
           "ConversionReport", "conversion_report", "convert", "qcfs"]
