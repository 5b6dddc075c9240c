"""The shared base of the event datamodules: files → partitions → (cached) count frames → train/val/test.

A subclass says where its files are (:meth:`EventDataModule._discover`), how one is read
(:meth:`EventDataModule._source`) and, for releases without a split, which rule makes one
(:meth:`EventDataModule._rule_split`).  Everything else — the frame spec from ``data.*``, the cache, skipping
corrupt files, carving validation from training, the split hash — is here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch.utils.data import Subset

from ..base import SpikeDataModule, split_indices
from ..collate import batch_first_collate, time_first_collate
from ..folder import default_cache_dir
from .augment import FrameAugment
from .cache import file_identity, open_or_build
from .datasets import CachedSource, EventFrames, EventSource
from .formats import require
from .frames import FrameSpec
from .layouts import Sample, labels_of
from .splits import split_hash, take

log = logging.getLogger(__name__)


class EventDataModule(SpikeDataModule):
    """Event recordings as count-frame sequences: batches ``x`` ``[T, B, *input_shape]`` (``time_first``, the
    engine's layout) or ``[B, T, ...]``, ``y`` ``[B]``.

    Common arguments (the ``data.*`` keys; see :mod:`.frames`, :mod:`.augment`, :mod:`.cache`, :mod:`.splits`):
        root: directory holding the release (or one directory above it).
        batch_size, num_workers, seed, pin_memory, drop_last: see :class:`~spaic_train.data.SpikeDataModule`.
        val_fraction: share of the training partition carved out (stratified, seeded) as validation, where the
            release has no validation partition.
        time_steps, bin_ms, bin_mode, polarity, downsample, denoise_ms: the frames (``None``: the dataset's
            default, the class attribute ``defaults``).
        clamp: binary frames (counts clipped to 1, after augmentation).
        flip_lr, translate_px, drop_event: training augmentation.
        cache: keep the count frames on disk (``cache_dir``, default ``$SPAIC_TRAIN_CACHE`` or
            ``~/.cache/spaic_train``, under ``events/``); ``False`` reads the files every epoch.
        time_first: collate batches time first (default).
    """

    is_sequence = True
    #: registry name; prefix of the cache directories
    dataset_name = ""
    #: (H, W) of the recordings
    sensor_size: tuple[int, int] = (1, 1)
    #: frame defaults of this dataset (what ``None`` arguments become)
    defaults: dict = {}
    #: time origin of ``bin_mode='time'`` (see :class:`~.frames.FrameSpec`)
    origin = "zero"
    #: SHD/SSC channel groups (``None`` for cameras)
    audio_channels: int | None = None
    #: packages of the ``events`` extra that reading this dataset needs, checked first when it is set up (a
    #: :class:`~spaic_train.data.MissingExtraError` naming the extra, before the files are looked for)
    requires: tuple[str, ...] = ("tonic",)

    def _init_events(self, root, val_fraction, time_steps, bin_ms, bin_mode, polarity, downsample, denoise_ms,
                     clamp, flip_lr, translate_px, drop_event, cache, cache_dir, time_first) -> None:
        given = {"time_steps": time_steps, "bin_ms": bin_ms, "bin_mode": bin_mode, "polarity": polarity,
                 "downsample": downsample, "denoise_ms": denoise_ms}
        frame = {k: (self.defaults.get(k) if v is None else v) for k, v in given.items()}
        frame = {k: v for k, v in frame.items() if v is not None}
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        self.root = str(root)
        self.val_fraction = float(val_fraction)
        self.spec = FrameSpec(sensor_size=tuple(self.sensor_size), channels=self.audio_channels, origin=self.origin,
                              **frame)
        self.augment = FrameAugment(float(flip_lr), int(translate_px), float(drop_event))
        self.augment.check_spatial(self.spec.frame_shape)
        self.clamp = bool(clamp)
        self.cache = bool(cache)
        self.cache_dir = str(Path(cache_dir).expanduser()) if cache_dir else str(default_cache_dir() / "events")
        self.time_first = bool(time_first)
        self.collate_fn = time_first_collate if self.time_first else batch_first_collate
        self.input_shape = tuple(self.spec.frame_shape)
        self.sequence_length = self.spec.time_steps
        self._split_ids: dict[str, list[str]] = {}

    # -- subclass hooks ------------------------------------------------------------------------------------
    def _discover(self) -> dict[str, list[Sample]]:  # pragma: no cover - abstract
        """``{partition: samples}`` of the release on disk (``'train'``, ``'test'``, ``'valid'`` or ``'all'``)."""
        raise NotImplementedError

    def _source(self, partition: str, samples: list[Sample]) -> EventSource:  # pragma: no cover - abstract
        """Counts of the samples of one partition, read from the files."""
        raise NotImplementedError

    def _rule_split(self, samples: list[Sample]) -> tuple[list[int], list[int]]:
        """``(train, test)`` positions of a release without a split (partition ``'all'``)."""
        raise NotImplementedError(f"{type(self).__name__} has no split rule")

    # -- building -----------------------------------------------------------------------------------------------
    def _frames(self, partition: str, samples: list[Sample]) -> tuple[list[Sample], object]:
        """The kept samples of a partition and their count source (the cache, built if needed, or the files)."""
        source = self._source(partition, samples)
        if not self.cache:
            return samples, source
        root = Path(self.root).expanduser()
        ids = [s.sample_id(root) for s in samples]
        files = file_identity([s.path for s in samples], root)
        cache = open_or_build(self.cache_dir, self.dataset_name, partition, self.spec, ids, files, source)
        source.close()
        return take(samples, cache.meta["kept"]), CachedSource(cache.directory)

    def _build(self) -> None:
        for package in self.requires:  # first: without the extra nothing below can work, files or not
            require(package, f"data.name={self.dataset_name!r}")
        parts = self._discover()
        root = Path(self.root).expanduser()
        built = {p: self._frames(p, s) for p, s in parts.items()}

        def dataset(part: str, train: bool) -> EventFrames:
            samples, source = built[part]
            return EventFrames(source, labels_of(samples), self.augment if train else None, self.clamp)

        if "all" in built:
            samples = built["all"][0]
            tr, te = self._rule_split(samples)
            pools = {"train": ("all", tr), "test": ("all", te)}
        else:
            pools = {"train": ("train", list(range(len(built["train"][0])))),
                     "test": ("test", list(range(len(built["test"][0]))))}
        part, tr = pools["train"]
        if "valid" in built:
            pools["val"] = ("valid", list(range(len(built["valid"][0]))))
        else:
            y = labels_of(take(built[part][0], tr))
            keep, val = split_indices(len(tr), self.val_fraction, self.seed, labels=y)
            pools["train"] = (part, take(tr, keep))
            pools["val"] = (part, take(tr, val))
        sets = {}
        for split, (p, idx) in pools.items():
            self._split_ids[split] = [s.sample_id(root) for s in take(built[p][0], idx)]
            sets[split] = Subset(dataset(p, split == "train"), list(idx)) if idx else None
        self.train_set, self.val_set, self.test_set = sets["train"], sets["val"], sets["test"]
        if self.train_set is None:
            raise ValueError(f"{type(self).__name__}: the training split is empty ({len(self._split_ids['test'])} "
                             f"test samples under data.root={self.root!r})")

    # -- recorded split --------------------------------------------------------------------------------------------
    def split_ids(self) -> dict[str, list[str]]:
        """``{'train'|'val'|'test': [sample ids]}`` (paths relative to ``data.root``; builds the splits)."""
        self.setup()
        return {k: list(v) for k, v in self._split_ids.items()}

    def split_hash(self) -> str:
        """sha256 of :meth:`split_ids` — equal across machines and clones exactly when the splits are equal."""
        return split_hash(self.split_ids())

    def describe_split(self) -> str:
        ids = self.split_ids()
        return ", ".join(f"{k} {len(ids.get(k, []))}" for k in ("train", "val", "test")) + \
            f" (split hash {self.split_hash()[:12]})"
