"""The event-data rows of docs/errors.md (appended to tests/test_errors.py's CASES): zero-argument callables that
must raise, with the key words of their messages."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from extras import require

from spaic_train.data import DataNotFoundError, MissingExtraError, build_datamodule
from spaic_train.data.events import CorruptEventFileError, read_aedat31


def _missing_release():
    require("h5py", "events")  # setup checks the extra before it looks for the files
    build_datamodule("shd", root="/nonexistent/shd-data", cache=False).setup()


def _gzipped_release():
    require("h5py", "events")
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "ssc_train.h5.gz").write_bytes(b"")
        build_datamodule("ssc", root=d, cache=False).setup()


def _truncated_aedat():
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "user01_fluorescent.aedat"
        packet = b"\x01\x00\x01\x00\x08\x00\x00\x00\x04\x00\x00\x00" + b"\x00" * 4 + b"\x0a\x00\x00\x00" * 3
        path.write_bytes(b"#!AER-DAT3.1\r\n#!END-HEADER\r\n" + packet + b"\x00" * 12)  # 10 events declared, 1.5 there
        read_aedat31(path)


def _without_the_extra():
    """``setup`` of ``nmnist`` as after ``pip install -e ".[dev]"``: tonic cannot be imported."""
    saved = sys.modules.get("tonic")
    sys.modules["tonic"] = None
    try:
        build_datamodule("nmnist", root="/nonexistent/nmnist", cache=False).setup()
    finally:
        if saved is None:
            sys.modules.pop("tonic", None)
        else:
            sys.modules["tonic"] = saved


EVENT_CASES = [
    ("events-missing-extra", _without_the_extra, MissingExtraError,
     ["data.name='nmnist'", "needs 'tonic'", "not installed", 'pip install -e ".[events]"']),
    ("events-missing-release", _missing_release, DataNotFoundError,
     ["shd not found", "data.root='/nonexistent/shd-data'", "shd_train.h5, shd_test.h5", "zenkelab.org",
      "never downloads"]),
    ("events-gzipped-release", _gzipped_release, DataNotFoundError, ["ssc_train.h5.gz", "gunzip"]),
    ("events-truncated-file", _truncated_aedat, CorruptEventFileError,
     ["user01_fluorescent.aedat", "declares 10 events of 8 bytes", "truncated"]),
    ("events-unknown-split", lambda: build_datamodule("cifar10_dvs", split="random"), ValueError,
     ["data.split='random'", "cifar10_dvs", "tebn, plif"]),
    ("events-split-of-gesture", lambda: build_datamodule("dvs_gesture", split="tebn"), ValueError,
     ["data.split='tebn'", "dvs_gesture", "the release ships its split"]),
    ("events-bad-bin-mode", lambda: build_datamodule("dvs_gesture", bin_mode="count"), ValueError,
     ["data.bin_mode", "time, duration, events", "'count'"]),
    ("events-bad-time-steps", lambda: build_datamodule("nmnist", time_steps=0), ValueError,
     ["data.time_steps", ">= 1", "0"]),
    ("events-bad-channels", lambda: build_datamodule("shd", channels=701), ValueError,
     ["data.channels", "[1, 700]", "701"]),
    ("events-bad-augment", lambda: build_datamodule("cifar10_dvs", flip_lr=2.0), ValueError,
     ["data.flip_lr", "probability in [0, 1]", "2.0"]),
    ("events-bad-translate", lambda: build_datamodule("ncaltech101", translate_px=-1), ValueError,
     ["data.translate_px", ">= 0", "-1"]),
]
