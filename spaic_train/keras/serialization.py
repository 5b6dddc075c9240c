"""Saving and loading Keras-style models: one ``torch.save`` file, loadable with ``weights_only=True``.

File format (a plain dict; nothing but strings, numbers, lists, dicts and tensors, never pickled objects)::

    {
      "format": "spaic_train.keras",   "version": 1,
      "class_name": "Sequential" | "Model",
      "config":     "<JSON>",      # architecture: model.get_config() (layers, feedback, decoder, T, dt)
      "compile":    "<JSON>" | None,   # compile() arguments when they are all names/numbers, else None
      "state_dict": {...},         # parameters and buffers: weights, biases, learnable taus, masks,
                                   # delays (ms), batch-norm running statistics
      "optimizer":  {...} | None,  # optimizer.state_dict() of the last fit (or the restored one)
    }

:func:`load_model` rebuilds the model with :class:`~spaic_train.keras.Sequential` /
:class:`~spaic_train.keras.Model` ``.from_config`` (layer classes are looked up by name in
:data:`~spaic_train.keras.layers.LAYERS`, so no user Python class is needed), loads the state dict
strictly, re-compiles with the saved settings and hands the optimizer state to the next ``fit``.
The file is written atomically (temporary file in the same directory, ``fsync``, ``os.replace``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

import torch

from ..io import atomic_torch_save, load_checkpoint_safely
from .models import Model, Sequential

__all__ = ["save_model", "load_model", "FORMAT", "VERSION"]

FORMAT = "spaic_train.keras"
VERSION = 1

_JSON_TYPES = (str, int, float, bool, type(None))


def _jsonable(value: Any) -> bool:
    if isinstance(value, _JSON_TYPES):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False


def save_model(model, path, include_optimizer: bool = True) -> None:
    """Save ``model`` (a :class:`~spaic_train.keras.Model` / ``Sequential``) to ``path`` (see the module docstring).

    Args:
        model: the model.
        path: file path (conventionally ``*.pt``); parent directories are created.
        include_optimizer: also store the optimizer state of the last ``fit``.

    Raises:
        TypeError: a layer argument or class that cannot be described in JSON (e.g. an unregistered
            layer class).
    """
    if not isinstance(model, Model):
        raise TypeError(f"save_model expects a spaic_train.keras Model or Sequential, got {type(model).__name__}")
    class_name = "Sequential" if isinstance(model, Sequential) else "Model"
    config = json.dumps(model.get_config())
    compile_cfg = model._compile_config
    compile_json: Optional[str] = None
    if compile_cfg is not None and _jsonable(compile_cfg):
        compile_json = json.dumps(compile_cfg)
    optimizer = model.optimizer_state_dict() if include_optimizer else None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "class_name": class_name, "config": config,
               "compile": compile_json, "state_dict": state,
               "optimizer": _to_cpu(optimizer) if optimizer is not None else None}
    atomic_torch_save(payload, path)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def load_model(path, compile: bool = True, map_location: Any = "cpu"):
    """Load a model written by :func:`save_model` / ``model.save``.

    Args:
        path: the file.
        compile: re-compile with the saved settings (when they were names/numbers) and restore the
            optimizer state into the next ``fit``.
        map_location: passed to ``torch.load`` (``weights_only=True`` always).

    Returns:
        A :class:`~spaic_train.keras.Sequential` or :class:`~spaic_train.keras.Model` with the saved
        weights and buffers, in ``eval()`` mode.  Building it does not consume the global RNG.

    Raises:
        FileNotFoundError: no such file.  IsADirectoryError: ``path`` is a directory.
        CheckpointError: not a PyTorch file, truncated / corrupt, or unsafe to load (see
            :func:`~spaic_train.io.load_checkpoint_safely`).
        ValueError: a PyTorch file that is not a saved model, or from a newer spaic_train.
    """
    payload = load_checkpoint_safely(path, map_location=map_location, kind="model file",
                                     remedy="load a file written by model.save / spaic_train.save_model")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"model file {os.fspath(path)!r} is not a spaic_train Keras model file (a training "
                         f"checkpoint or another PyTorch file?); write models with model.save / "
                         f"spaic_train.save_model")
    if int(payload.get("version", 0)) > VERSION:
        raise ValueError(f"{path}: file format version {payload['version']} is newer than this spaic_train "
                         f"supports ({VERSION})")
    cls = {"Sequential": Sequential, "Model": Model}.get(payload.get("class_name"))
    if cls is None:
        raise ValueError(f"{path}: unknown model class {payload.get('class_name')!r}")
    config = json.loads(payload["config"])
    with torch.random.fork_rng(devices=[]):
        model = cls.from_config(config)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: the saved weights do not match the rebuilt architecture (missing: "
                         f"{sorted(missing)}, unexpected: {sorted(unexpected)})")
    model.eval()
    if compile and payload.get("compile"):
        model.compile(**json.loads(payload["compile"]))
        if payload.get("optimizer") is not None:
            model.__dict__["_pending_optimizer_state"] = payload["optimizer"]
    return model
