"""Training monitoring: :class:`TensorBoardMonitor` (firing rates, silent neurons, membrane and weight
histograms, spike rasters of a fixed sample, per epoch).  See :mod:`spaic_train.monitoring.tensorboard`."""

from .tensorboard import TensorBoardMonitor, raster_image, spike_statistics

__all__ = ["TensorBoardMonitor", "raster_image", "spike_statistics"]
