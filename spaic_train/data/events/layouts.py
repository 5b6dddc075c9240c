"""Where each release keeps its files: our own indexing of what is on disk (no download is ever attempted).

Each ``find_*`` function returns ``{partition: [Sample, ...]}`` with the samples in a fixed order (files sorted by
their numeric index, :func:`natural_key`, never by the directory walk), or raises
:class:`~spaic_train.data.DataNotFoundError` naming the root searched, the files expected and where the dataset is
published.  Layouts read:

* DVS Gesture — IBM's release (``DvsGesture/``: ``userNN_<lighting>.aedat`` AEDAT 3.1 + ``userNN_<lighting>_labels.csv``
  with ``class,startTime_usec,endTime_usec``, split by ``trials_to_train.txt`` / ``trials_to_test.txt``, or by
  user 1–23 / 24–29 without them), or tonic's repack (``ibmGestureTrain|ibmGestureTest/userNN_<lighting>/<class>.npy``);
* CIFAR10-DVS — ``<class>/cifar10_<class>_<i>.aedat`` (the jAER original) or ``.aedat4`` (tonic's repack);
* N-Caltech101 — ``Caltech101/<class>/image_NNNN.bin`` (``BACKGROUND_Google`` is not a class);
* SHD / SSC — ``shd_train.h5``, ``shd_test.h5`` / ``ssc_train.h5``, ``ssc_valid.h5``, ``ssc_test.h5``;
* N-MNIST — SLAYER's lists (``train1K.txt``: ``<sample id> <class>`` lines) + ``<id>.bs2``, or the original
  ``Train|Test/<digit>/*.bin`` (:func:`find_nmnist`).

Each directory is looked for in ``data.root`` itself and one level below it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base import DataNotFoundError

GESTURE_CLASSES = ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
                   "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll",
                   "air_drums", "air_guitar", "other_gestures")
CIFAR10_DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

PUBLISHED = {
    "dvs_gesture": "IBM, https://research.ibm.com/interactive/dvsgesture/ (DvsGesture.tar.gz); tonic's repack: "
                   "https://figshare.com/ndownloader/files/38022171 (ibmGestureTrain.tar.gz) and .../38020584 (test)",
    "cifar10_dvs": "Li et al. 2017, https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 (one zip per "
                   "class); tonic's .aedat4 repack: https://figshare.com/ndownloader/files/38023437",
    "ncaltech101": "Orchard et al. 2015, https://www.garrickorchard.com/datasets/n-caltech101 (Caltech101.zip)",
    "shd": "Cramer et al. 2020, https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/ "
           "(shd_train.h5.gz, shd_test.h5.gz; gunzip them)",
    "ssc": "Cramer et al. 2020, https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/ "
           "(ssc_train.h5.gz, ssc_valid.h5.gz, ssc_test.h5.gz; gunzip them)",
    "nmnist": "Orchard et al. 2015, https://www.garrickorchard.com/datasets/n-mnist (Train.zip, Test.zip)",
}


@dataclass(frozen=True)
class Sample:
    """One sample: its file, label and where in the file it is.

    Args:
        path: the file holding it.
        label: class index.
        item: sample number inside an HDF5 partition file (SHD/SSC), else ``None``.
        window_us: ``(start, end)`` µs of a gesture inside a whole-trial AEDAT file, else ``None``.
        group: class folder / trial (per-class split rules group by it).
        index: numeric index of the file within its group (``cifar10_cat_17.aedat`` → 17).
    """

    path: Path
    label: int
    item: int | None = None
    window_us: tuple[int, int] | None = None
    group: str = ""
    index: int = 0

    def sample_id(self, root: Path) -> str:
        """Id that names the sample the same way in every clone: relative path, ``#item`` / ``@start-end``."""
        from .cache import relative

        sid = relative(self.path, root)
        if self.item is not None:
            sid += f"#{self.item}"
        if self.window_us is not None:
            sid += f"@{self.window_us[0]}-{self.window_us[1]}"
        return sid


def natural_key(name: str) -> tuple:
    """Sort key by numeric parts: ``image_2`` < ``image_10``, ``user2`` < ``user10``."""
    return tuple((0, int(s), "") if s.isdigit() else (1, 0, s.lower()) for s in re.split(r"(\d+)", name) if s)


def last_number(name: str) -> int:
    """The last integer in a file name (``cifar10_cat_17.aedat`` → 17; ``-1`` when there is none)."""
    nums = re.findall(r"\d+", Path(name).stem)
    return int(nums[-1]) if nums else -1


def candidate_dirs(root: Path) -> list[Path]:
    """``root`` and its sub-directories (sorted), where a release's folder is looked for."""
    if not root.is_dir():
        return [root]
    return [root, *sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name))]


def not_found(name: str, root: Path, expected: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"{name} not found under data.root={str(root)!r} (searched it and one directory level below): expected "
        f"{expected}. The dataset is published by {PUBLISHED[name]}; download it yourself (spaic_train never "
        f"downloads) and set data.root to the directory holding it."
    )


# ------------------------------------------------------------------------------------------------- SHD / SSC
def find_hdf5(name: str, root: Path, partitions: tuple[str, ...]) -> dict[str, Path]:
    """``{partition: <name>_<partition>.h5}`` (all of them in one directory)."""
    for d in candidate_dirs(root):
        files = {p: d / f"{name}_{p}.h5" for p in partitions}
        if all(f.is_file() for f in files.values()):
            return files
    gz = [str(f) for d in candidate_dirs(root) for f in d.glob(f"{name}_*.h5.gz")]
    hint = f" (found {', '.join(gz)}: gunzip them first)" if gz else ""
    raise not_found(name, root, ", ".join(f"{name}_{p}.h5" for p in partitions) + hint)


# ---------------------------------------------------------------------------------------------- DVS Gesture
def _read_gesture_labels(csv: Path) -> list[tuple[int, int, int]]:
    """``[(class 0-10, start µs, end µs), ...]`` of a ``userNN_<lighting>_labels.csv`` (header line, then
    ``class,startTime_usec,endTime_usec`` with classes 1–11)."""
    rows = []
    for line in csv.read_text().splitlines()[1:]:
        line = line.strip()
        if not line:
            continue
        try:
            c, a, b = (int(v) for v in line.split(","))
        except ValueError:
            raise DataNotFoundError(f"{csv}: malformed label line {line!r} (expected class,startTime_usec,"
                                    f"endTime_usec)") from None
        if not 1 <= c <= len(GESTURE_CLASSES):
            raise DataNotFoundError(f"{csv}: class {c} outside 1..{len(GESTURE_CLASSES)}")
        rows.append((c - 1, a, b))
    return rows


def _gesture_trial_split(d: Path, trials: list[Path]) -> dict[str, list[Path]]:
    lists = {p: d / f"trials_to_{p}.txt" for p in ("train", "test")}
    if all(f.is_file() for f in lists.values()):
        out = {}
        for p, f in lists.items():
            names = [ln.strip() for ln in f.read_text().splitlines() if ln.strip().endswith(".aedat")]
            out[p] = [d / n for n in names]
        return out
    # without the trial lists: the release's rule, users 1-23 train, 24-29 test
    user = {t: int(re.match(r"user(\d+)", t.name).group(1)) for t in trials}
    return {"train": [t for t in trials if user[t] <= 23], "test": [t for t in trials if user[t] > 23]}


def find_dvs_gesture(root: Path) -> tuple[dict[str, list[Sample]], str]:
    """DVS Gesture samples per partition and the layout found (``'aedat'`` or ``'npy'``)."""
    for d in candidate_dirs(root):
        trials = sorted(d.glob("user*_*.aedat"), key=lambda p: natural_key(p.name))
        if trials:
            out = {}
            for part, files in _gesture_trial_split(d, trials).items():
                samples = []
                for f in sorted(files, key=lambda p: natural_key(p.name)):
                    csv = f.with_name(f.stem + "_labels.csv")
                    if not f.is_file() or not csv.is_file():
                        raise not_found("dvs_gesture", root,
                                        f"{f.name} and {csv.name} (listed in trials_to_{part}.txt)")
                    for k, (c, a, b) in enumerate(_read_gesture_labels(csv)):
                        samples.append(Sample(f, c, window_us=(a, b), group=f.stem, index=k))
                out[part] = samples
            return out, "aedat"
    for d in candidate_dirs(root):
        dirs = {"train": d / "ibmGestureTrain", "test": d / "ibmGestureTest"}
        if all(v.is_dir() for v in dirs.values()):
            out = {}
            for part, pdir in dirs.items():
                samples = []
                for trial in sorted((t for t in pdir.iterdir() if t.is_dir()), key=lambda t: natural_key(t.name)):
                    for f in sorted(trial.glob("*.npy"), key=lambda p: natural_key(p.name)):
                        samples.append(Sample(f, int(f.stem), group=trial.name, index=int(f.stem)))
                out[part] = samples
            return out, "npy"
    raise not_found("dvs_gesture", root, "IBM's DvsGesture/ folder (userNN_<lighting>.aedat + _labels.csv, "
                    "trials_to_train.txt, trials_to_test.txt) or tonic's ibmGestureTrain/ and ibmGestureTest/ "
                    "(userNN_<lighting>/<class>.npy)")


# --------------------------------------------------------------------------------------- per-class folders
def _class_folders(root: Path, classes: tuple[str, ...] | None, pattern: str, skip: tuple[str, ...] = ()):
    """First directory (root or one below) holding class folders with files matching ``pattern``."""
    for d in candidate_dirs(root):
        if not d.is_dir():
            continue
        sub = [c for c in d.iterdir() if c.is_dir() and c.name not in skip]
        if classes is not None:
            sub = [c for c in sub if c.name in classes]
            if len(sub) < len(classes):
                continue
        sub = sorted(sub, key=lambda c: natural_key(c.name))
        if sub and all(any(c.glob(pattern)) for c in sub):
            return sub
    return None


def find_cifar10_dvs(root: Path) -> tuple[dict[str, list[Sample]], str]:
    """All CIFAR10-DVS recordings (one partition ``'all'``; the split is a rule, :mod:`.splits`) and the format
    (``'aedat'``: jAER original, ``'aedat4'``: tonic's repack)."""
    for ext in ("aedat", "aedat4"):
        folders = _class_folders(root, CIFAR10_DVS_CLASSES, f"*.{ext}")
        if folders:
            samples = []
            for c in sorted(folders, key=lambda f: CIFAR10_DVS_CLASSES.index(f.name)):
                files = sorted(c.glob(f"*.{ext}"), key=lambda p: natural_key(p.name))
                samples += [Sample(f, CIFAR10_DVS_CLASSES.index(c.name), group=c.name, index=last_number(f.name))
                            for f in files]
            return {"all": samples}, ext
    raise not_found("cifar10_dvs", root, "the 10 class folders (" + ", ".join(CIFAR10_DVS_CLASSES) +
                    ") holding cifar10_<class>_<i>.aedat (jAER original) or .aedat4 (tonic's repack)")


def find_ncaltech101(root: Path) -> tuple[dict[str, list[Sample]], list[str]]:
    """All N-Caltech101 recordings (partition ``'all'``) and the class names (sorted folder names)."""
    folders = _class_folders(root, None, "*.bin", skip=("BACKGROUND_Google",))
    if not folders:
        raise not_found("ncaltech101", root, "Caltech101/<class>/image_NNNN.bin (5-byte event records), one folder "
                        "per class")
    names = sorted((f.name for f in folders), key=str.lower)
    samples = []
    for c in sorted(folders, key=lambda f: f.name.lower()):
        files = sorted(c.glob("*.bin"), key=lambda p: natural_key(p.name))
        samples += [Sample(f, names.index(c.name), group=c.name, index=last_number(f.name)) for f in files]
    return {"all": samples}, names


def read_label_list(path: str | Path) -> list[tuple[str, int]]:
    """A SLAYER-style N-MNIST list file (``train1K.txt``): ``#`` comment/header lines, then ``<sample id> <class>``
    per line (tab or space separated, CRLF tolerated).  Returns ``[(sample_id, label), ...]`` in file order."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            out.append((parts[0], int(parts[1])))
        except (IndexError, ValueError):
            raise DataNotFoundError(f"{path}: malformed line {line!r} (expected '<sample id> <class>')") from None
    return out


def _nmnist_listed(list_file: Path) -> list[Sample]:
    """The recordings a list file names: ``<id>.bs2`` (SLAYER) or ``<id>.bin`` next to it."""
    if not list_file.is_file():
        raise DataNotFoundError(f"N-MNIST list file {list_file} does not exist")
    samples = []
    for sid, label in read_label_list(list_file):
        cands = [list_file.parent / f"{sid}{ext}" for ext in (".bs2", ".bin", "")]
        hit = next((c for c in cands if c.is_file()), None)
        if hit is None:
            raise DataNotFoundError(f"N-MNIST sample {sid!r} listed in {list_file} not found ({cands[0]} / .bin)")
        samples.append(Sample(hit, label, group=hit.parent.name, index=last_number(hit.name)))
    return samples


def _nmnist_tree(root: Path, part: str) -> list[Sample]:
    """The original release: ``<Train|Test>/<digit>/*.bin`` (``.bs2`` too), in ``root`` or one level below."""
    for d in candidate_dirs(root):
        if d.is_dir() and d.name.lower() == part:
            samples = [Sample(f, int(c.name), group=c.name, index=last_number(f.name))
                       for c in d.iterdir() if c.is_dir() and c.name.isdigit()
                       for f in c.iterdir() if f.suffix.lower() in (".bin", ".bs2")]
            if samples:
                return samples
    return []


def find_nmnist(root: Path, train_list: str | None, test_list: str | None) -> dict[str, list[Sample]]:
    """N-MNIST train/test recordings, sorted by (digit folder, numeric sample id).

    Per partition: the explicit list file (``data.train_list`` / ``data.test_list``), else the first
    ``<partition>*.txt`` list (SLAYER's ``train1K.txt`` / ``test100.txt``: ``<sample id> <class>`` lines, recordings
    ``<id>.bs2`` next to it) in ``root`` or one level below, else the original tree ``<Train|Test>/<digit>/*.bin``.
    """
    out = {}
    for part, given in (("train", train_list), ("test", test_list)):
        lists = [Path(given).expanduser()] if given else [
            f for d in candidate_dirs(root) if d.is_dir() for f in sorted(d.glob("*.txt"))
            if f.name.lower().startswith(part)]
        samples = _nmnist_listed(lists[0]) if lists else _nmnist_tree(root, part)
        if not samples:
            raise not_found("nmnist", root, f"for the {part} split a list file '{part}*.txt' (lines '<sample id> "
                            f"<class>', recordings '<id>.bs2' next to it; or set data.{part}_list) or the original "
                            f"layout {part.capitalize()}/<digit>/*.bin")
        out[part] = sorted(samples, key=lambda s: (natural_key(s.group), s.index))
    return out


def labels_of(samples: list[Sample]) -> np.ndarray:
    return np.asarray([s.label for s in samples], dtype=np.int64)
