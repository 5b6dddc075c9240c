"""Training: losses, optimizers/schedulers, metrics, the ``SNNModule`` LightningModule and Keras-style drivers.

Typical use::

    from spaic_train.training import SNNModule, fit, evaluate, predict

    module = SNNModule(net, loss="ce_rate", optimizer="adam", lr=1e-3, scheduler="cosine")
    history = fit(module, x_train, y_train, epochs=10, batch_size=64, validation_split=0.1, seed=0)
    history.history["val_accuracy"]          # one float per epoch
    evaluate(module, x_test, y_test)          # {'loss': ..., 'accuracy': ...}
    predict(module, x_test)                   # [N, C] (or [T, N, C] for the 'sequence' decoder)

``SNNModule`` also works with a user-built ``lightning.Trainer``.
"""

from .checks import check_labels
from .data import (
    FitData,
    make_loader,
    prepare_eval_data,
    prepare_fit_data,
    split_validation,
    to_dataset,
    unpack_batch,
)
from .delay_sigma import DelaySigmaSchedule, learnable_delay_connections
from .history import History
from .losses import (
    LOSSES,
    MSE,
    CECount,
    CERate,
    CrossEntropy,
    MSECount,
    SpikeLoss,
    TETLoss,
    get_loss,
    is_sequence,
    reduce_time,
)
from .metrics import METRICS, accuracy, get_metric, top5_accuracy, topk_accuracy
from .module import DELAY_LR_FACTOR, SNNModule, infer_num_steps, seed_rank_rngs
from .optimizers import OPTIMIZERS, SCHEDULERS, SchedulerContext, build_optimizer, build_scheduler
from .trainer import evaluate, fit, predict

__all__ = [
    "LOSSES",
    "METRICS",
    "MSE",
    "OPTIMIZERS",
    "SCHEDULERS",
    "CECount",
    "CERate",
    "CrossEntropy",
    "DELAY_LR_FACTOR",
    "DelaySigmaSchedule",
    "FitData",
    "History",
    "MSECount",
    "SNNModule",
    "SchedulerContext",
    "SpikeLoss",
    "TETLoss",
    "accuracy",
    "build_optimizer",
    "build_scheduler",
    "check_labels",
    "evaluate",
    "fit",
    "get_loss",
    "get_metric",
    "infer_num_steps",
    "is_sequence",
    "learnable_delay_connections",
    "make_loader",
    "predict",
    "prepare_eval_data",
    "prepare_fit_data",
    "reduce_time",
    "seed_rank_rngs",
    "split_validation",
    "to_dataset",
    "top5_accuracy",
    "topk_accuracy",
    "unpack_batch",
]
