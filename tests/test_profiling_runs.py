"""Profiling in training: the ``EnergyMonitor`` callback's per-epoch counts and TensorBoard scalars, and the
``sops_per_sample`` / ``energy_uj_per_sample`` a recipe run writes to ``metrics.json``."""

import json

import pytest
import torch
from hydra import compose, initialize_config_dir

import spaic_train as st
from spaic_train.cli import CONFIG_DIR, run
from spaic_train.config import register_configs
from spaic_train.layers import Full, Input
from spaic_train.profiling import EnergyMonitor, SpikeCounter, recorded_vars


def _scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_energy_monitor_counts_the_training_batches_and_logs_each_epoch(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    torch.manual_seed(0)
    model = st.Sequential([Input((12,), encoder="bernoulli"), Full(8, name="h"), Full(3, name="out")], time_steps=4)
    model.compile(optimizer="adam", lr=1e-2, loss="ce_rate", metrics=["accuracy"])
    x, y = torch.rand(40, 12), torch.randint(0, 3, (40,))
    monitor = EnergyMonitor()
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="tb", version="")
    model.fit(x, y, epochs=2, batch_size=10, callbacks=[monitor], logger=logger, enable_progress_bar=False, seed=0)
    assert len(monitor.results) == 2
    last = monitor.last
    assert last.samples == 40 and last.time_steps == 4
    scalars = _scalars(tmp_path / "tb")
    for tag in ("energy/sops_per_sample", "energy/energy_uj_per_sample", "energy/sops/h", "energy/sops/out",
                "energy/firing_rate/h", "energy/silent_fraction/out", "energy/firing_rate/input"):
        assert len(scalars[tag]) == 2, tag
    assert scalars["energy/sops_per_sample"][-1] == pytest.approx(last.sops, rel=1e-6)
    # the input layer's SOPs are those of its spikes: 8 synapses per input spike
    h = next(c for c in last.connections if c.post == "h")
    rate_in = next(x.firing_rate for x in last.layers if x.name == "input")
    assert h.sops == pytest.approx(rate_in * 12 * 4 * 8)


def test_spike_counter_needs_recorded_spikes():
    model = st.Sequential([Input((3,)), Full(2, name="out")], time_steps=2)
    counter = SpikeCounter(model)
    assert recorded_vars(model) == ("O",)
    with pytest.raises(ValueError, match="no recorded spikes"):
        counter.update({})
    with pytest.raises(ValueError, match="nothing was profiled"):
        counter.result()
    with pytest.raises(TypeError, match="spaic_train Network"):
        SpikeCounter(torch.nn.Linear(2, 2))


def test_recipe_run_writes_sops_and_energy_to_metrics_json(tmp_path):
    overrides = ["trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
                 "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false", "trainer.checkpoint=false",
                 "summary=false", "save_model=false"]
    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    metrics = run(cfg, output_dir=tmp_path)
    written = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("sops_per_sample", "energy_uj_per_sample"):
        assert written[key] == metrics[key] and written[key] > 0, key
    assert written["energy_uj_per_sample"] == pytest.approx(
        (written["sops_per_sample"] * 0.9 + written["macs_per_sample"] * 4.6) * 1e-6)
    scalars = _scalars(tmp_path / "tb")
    assert any(tag.startswith("energy/sops/") for tag in scalars)


@pytest.mark.slow
def test_the_readme_cost_example_runs_as_printed(tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "README.md").read_text()
    section = text[text.index("## What a network costs"):]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    env = {**__import__("os").environ, "PYTHONPATH": str(repo)}
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "SOPs/sample" in res.stdout and "Energy per sample" in res.stdout
