#!/usr/bin/env python
"""Train a spiking network from a Hydra recipe (same as the ``spaic-train`` console script).

    python train.py                                   # default recipe: digits_snn (sklearn 8x8 digits, no download)
    python train.py recipe=cifar_snn data.format=folder data.root=/path/to/cifar10-jpeg
    python train.py trainer.max_epochs=1 optimizer.lr=3e-4
    python train.py --cfg job                         # show the composed config
    python train.py -m optimizer.lr=1e-3,3e-4         # multirun sweep

See ``spaic_train/cli.py`` and the README's "Recipes" section.
"""

import sys

try:
    from spaic_train.cli import main  # imports torch: seconds, in which a Ctrl-C must not print a traceback
except KeyboardInterrupt:
    print("Interrupted (Ctrl-C) before training started; nothing to continue", file=sys.stderr)
    raise SystemExit(130) from None

if __name__ == "__main__":
    main()
