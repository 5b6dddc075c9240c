"""``python train.py`` as a user types it: the README's commands as printed, input errors (one message, exit 2, no
traceback, no run directory), the command-line group winning over a recipe, the run-directory lock, Ctrl-C and the
command that resumes exactly, ``trainer.resume=last``, and the small slips (``recipe=x.yaml``, ``--recipe x``).

Each run starts in its own temporary directory (``cwd``), so that the default ``outputs/<recipe>/<date>`` and
``multirun/<recipe>/<date>`` folders are those a user gets, and no ``hydra.run.dir`` is needed.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from spaic_train.cli import ConfigError
from spaic_train.run_dir import LOCK_NAME, RunDirLock, latest_run_dir, lock_holder, resume_command

REPO = Path(__file__).resolve().parents[1]
TRAIN = str(REPO / "train.py")
#: size overrides only (what the README allows a test to append)
SMALL = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), HYDRA_FULL_ERROR="0")


def train(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TRAIN, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def start(args: list[str], cwd: Path, program: list[str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *(program or [TRAIN]), *args], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_dirs(cwd: Path) -> list[Path]:
    return sorted(p for p in (cwd / "outputs").glob("*/*") if p.is_dir())


# ---------------------------------------------------------------------------------------------------- README lines
@pytest.mark.slow  # two runs, ~60 s on 2 loaded cores
def test_readme_multirun_command_as_printed(tmp_path):
    """``python train.py -m optimizer.lr=1e-3,3e-4`` → ``multirun/<recipe>/<date>/{0,1}`` (only size overrides
    appended; no ``hydra.sweep.dir``)."""
    res = train("-m", "optimizer.lr=1e-3,3e-4", *SMALL, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (sweep,) = (tmp_path / "multirun" / "digits_snn").iterdir()
    dirs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert dirs == ["0", "1"]
    lrs = [yaml.safe_load((sweep / d / ".hydra" / "config.yaml").read_text())["optimizer"]["lr"] for d in dirs]
    assert lrs == pytest.approx([1e-3, 3e-4])
    assert all((sweep / d / "metrics.json").is_file() for d in dirs)


@pytest.mark.slow  # ~35 s on 2 loaded cores
def test_readme_hidden_units_override_on_the_default_recipe(tmp_path):
    """``python train.py trainer.max_epochs=1 optimizer.lr=3e-4 model.vars.hidden=256``: the hidden layer has 256
    units, and the model.pt it writes evaluates without compile (its compile settings are saved with it)."""
    import spaic_train as st
    from spaic_train.data import build_datamodule

    res = train("trainer.max_epochs=1", "optimizer.lr=3e-4", "model.vars.hidden=256", *SMALL[1:], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (out,) = run_dirs(tmp_path)
    model = st.load_model(out / "model.pt")
    assert model.get_layer("hidden").output_shape == (256,)
    metrics = json.loads((out / "metrics.json").read_text())
    dm = build_datamodule("digits")
    again = model.evaluate(dm, accelerator="cpu", devices=1, limit_test_batches=1, enable_progress_bar=False)
    assert again["accuracy"] == metrics["test_accuracy"]


def test_sweep_dir_and_hidden_var_compose_in_process():
    """The fast halves of the two tests above: the sweep directory resolves where the launcher reads it (before
    Hydra's runtime config is set; ``${hydra:...}`` did not), and ``model.vars.hidden`` sizes the hidden layer."""
    from hydra import compose, initialize_config_dir

    from spaic_train.cli import CONFIG_DIR, build_model
    from spaic_train.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model.vars.hidden=256"], return_hydra_config=True)
    assert str(cfg.hydra.sweep.dir).startswith("multirun/digits_snn/")
    assert build_model(cfg.model, (8, 8)).get_layer("hidden").output_shape == (256,)


# ---------------------------------------------------------------------------------------------------- input errors
CLI_ERRORS = [  # (id, arguments, words of the one message)
    ("batch-size", ["data.batch_size=-1"], ["data.batch_size must be >= 1", "-1"]),
    ("lr", ["optimizer.lr=-1"], ["optimizer.lr", ">= 0", "-1.0"]),
    ("gpu", ["trainer.accelerator=gpu"], ["trainer.accelerator=gpu", "no such device"]),
    ("resume-missing", ["trainer.resume=/nonexistent/x.ckpt"], ["trainer.resume", "does not exist"]),
    ("resume-corrupt", ["trainer.resume=corrupt.ckpt"], ["trainer.resume", "not a pytorch file"]),
    ("resume-truncated", ["trainer.resume=truncated.ckpt"], ["trainer.resume", "truncated or corrupt"]),
    ("resume-last-no-run", ["trainer.resume=last"], ["trainer.resume=last", "no run of recipe 'digits_snn'"]),
    ("dashes", ["--recipe", "cifar_snn"], ["--recipe", "use recipe=cifar_snn"]),
]


def _check_cli_errors(tmp_path: Path, cases: list) -> None:
    """The cases at once (one process each, started together): the message alone on stderr, exit 2, and the
    launch directory holds nothing new."""
    procs = {}
    for case, args, _ in cases:
        cwd = tmp_path / case
        cwd.mkdir()
        torch.save({"state_dict": {"w": torch.zeros(1000)}}, cwd / "truncated.ckpt")
        data = (cwd / "truncated.ckpt").read_bytes()
        (cwd / "truncated.ckpt").write_bytes(data[: len(data) // 2])
        (cwd / "corrupt.ckpt").write_text("not a checkpoint")
        procs[case] = start(args, cwd)
    for case, _, words in cases:
        out, err = procs[case].communicate(timeout=300)
        assert procs[case].returncode == 2, (case, err[-2000:])
        assert "Traceback" not in err + out, (case, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), (case, err)
        assert all(w.lower() in lines[0].lower() for w in words), (case, lines[0])
        assert sorted(p.name for p in (tmp_path / case).iterdir()) == ["corrupt.ckpt", "truncated.ckpt"], case


def test_input_errors_one_message_exit_2_no_traceback_no_run_dir(tmp_path):
    """The first check of a run (the datamodule's) and one of the command line (all of them: the slow test)."""
    _check_cli_errors(tmp_path, [c for c in CLI_ERRORS if c[0] in ("batch-size", "dashes")])


@pytest.mark.slow  # 8 processes, ~100 s on 2 loaded cores
@pytest.mark.skipif(torch.cuda.is_available(), reason="the gpu case needs a machine without a GPU")
def test_every_listed_input_error_one_message_exit_2_no_traceback_no_run_dir(tmp_path):
    _check_cli_errors(tmp_path, CLI_ERRORS)


# ---------------------------------------------------------------------------------------------------- trainer=gpu
def test_command_line_trainer_group_wins_over_the_recipe(tmp_path):
    """``trainer=gpu`` with a recipe that sets ``accelerator: cpu``: the GPU option applies (said in the log); without
    a GPU the run then stops saying so, instead of training on the CPU in bf16."""
    res = train("trainer=gpu", *SMALL, cwd=tmp_path)
    said = "trainer=gpu (command line) wins over the recipe's trainer.accelerator=cpu: trainer.accelerator=gpu"
    assert said in res.stdout + res.stderr
    if torch.cuda.is_available():
        assert res.returncode == 0, res.stderr[-3000:]
    else:
        assert res.returncode == 2 and "trainer.accelerator=gpu: no such device" in res.stderr
        assert not (tmp_path / "outputs").exists()


def test_explicit_key_wins_over_the_chosen_group_and_recipe_file_names_are_read(tmp_path):
    """``trainer=gpu trainer.accelerator=cpu trainer.precision=32-true``: keys on the command line win over both;
    ``recipe=digits_snn.yaml`` runs digits_snn into ``outputs/digits_snn/`` (not ``outputs/digits_snn.yaml/``)."""
    res = train("recipe=digits_snn.yaml", "trainer=gpu", "trainer.accelerator=cpu", "trainer.precision=32-true",
                *SMALL, "trainer.logger=none", "save_model=false", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "wins over the recipe's trainer.accelerator" not in res.stdout + res.stderr
    assert [p.name for p in (tmp_path / "outputs").iterdir()] == ["digits_snn"]
    (out,) = run_dirs(tmp_path)
    saved = yaml.safe_load((out / ".hydra" / "config.yaml").read_text())
    assert saved["trainer"]["accelerator"] == "cpu" and saved["trainer"]["precision"] == "32-true"


# ---------------------------------------------------------------------------------------------------- lock
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_run_into_a_locked_run_dir_stops(tmp_path):
    run_dir = tmp_path / "run"
    with RunDirLock(run_dir):  # a live run (this process) holds the directory
        res = train(f"hydra.run.dir={run_dir}", *SMALL, cwd=tmp_path)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert f"in use by another run (pid {os.getpid()}" in res.stderr
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]  # nothing of the second run was written


@pytest.mark.slow  # a whole run, ~20 s on 2 loaded cores (the takeover itself: test_run_dir_lock_in_process)
def test_a_stale_lock_is_taken_over_by_the_next_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text(f"{_dead_pid()} {os.uname().nodename}\n")  # left by a killed run
    res = train(f"hydra.run.dir={run_dir}", *SMALL, "trainer.logger=none", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "taking over the lock of a run that is gone" in res.stdout + res.stderr
    assert (run_dir / "metrics.json").is_file() and not (run_dir / LOCK_NAME).exists()


def test_run_dir_lock_in_process(tmp_path):
    with RunDirLock(tmp_path):
        assert lock_holder(tmp_path) == f"pid {os.getpid()} on host {os.uname().nodename}"
        with pytest.raises(ConfigError, match="in use by another run"), RunDirLock(tmp_path):
            pass
    assert lock_holder(tmp_path) is None and not (tmp_path / LOCK_NAME).exists()
    (tmp_path / LOCK_NAME).write_text(f"{_dead_pid()} {os.uname().nodename}\n")
    assert lock_holder(tmp_path) is None  # stale
    with RunDirLock(tmp_path):
        assert lock_holder(tmp_path).startswith(f"pid {os.getpid()} ")


# ---------------------------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_during_start_up_is_one_line_exit_130(tmp_path):
    """SIGINT while the run imports torch (spaic_train, then the run's modules): one line, exit 130, no traceback,
    no run directory."""
    proc = start([], tmp_path)
    deadline = time.monotonic() + 120
    maps = Path(f"/proc/{proc.pid}/maps")
    while time.monotonic() < deadline and "libtorch" not in (maps.read_text() if maps.exists() else ""):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and [line for line in err.splitlines() if line.strip()] == [
        "Interrupted (Ctrl-C) before training started; nothing to continue"]
    assert not (tmp_path / "outputs").exists()


def test_resume_last_alone_continues_the_latest_run_of_the_recipe(tmp_path, monkeypatch):
    from spaic_train.cli import _checked_arguments

    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(["2026-12-01_10-00-00", "2026-12-02_10-00-00", "2026-11-30_10-00-00"]):
        ckpt = tmp_path / "outputs" / "digits_snn" / name / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"x")
        os.utime(ckpt, (1000 + i, 1000 + i))
    (tmp_path / "outputs" / "digits_snn" / "2026-12-03_10-00-00").mkdir()  # no checkpoint: not resumable
    newest = tmp_path / "outputs" / "digits_snn" / "2026-11-30_10-00-00"  # its last.ckpt was written last
    assert latest_run_dir("outputs/digits_snn").resolve() == newest
    args = _checked_arguments(["trainer.resume=last", "optimizer.lr=1e-3"])
    assert args[:2] == ["trainer.resume=last", "optimizer.lr=1e-3"]
    assert Path(args[2].removeprefix("hydra.run.dir=")).resolve() == newest
    with pytest.raises(ConfigError, match="no run of recipe 'mnist_fc'"):
        _checked_arguments(["recipe=mnist_fc", "trainer.resume=last"])


def test_resume_command_keeps_the_overrides():
    cmd = resume_command("train.py", ["optimizer.lr=3e-4", "trainer.resume=old.ckpt", "data.root=/my data"],
                         "/runs/a b")
    assert cmd == "python train.py optimizer.lr=3e-4 'data.root=/my data' 'hydra.run.dir=/runs/a b' trainer.resume=last"
    assert resume_command("/usr/bin/spaic-train", [], "/r").startswith("spaic-train hydra.run.dir=/r")


_INTERRUPTING = """
import os, signal, sys
import lightning.pytorch as pl
import spaic_train.recipe as recipe

class CtrlCAfter(pl.Callback):  # a user's Ctrl-C after the {n}-th batch, mid-epoch
    seen = 0

    def on_train_batch_end(self, *args):
        CtrlCAfter.seen += 1
        if CtrlCAfter.seen == {n}:
            os.kill(os.getpid(), signal.SIGINT)

build = recipe.build_callbacks
recipe.build_callbacks = lambda cfg, logger: [CtrlCAfter(), *build(cfg, logger)]
sys.argv[0] = {train!r}
from spaic_train.cli import main
main()
"""


@pytest.mark.slow
def test_ctrl_c_mid_epoch_prints_the_command_that_resumes_exactly(tmp_path):
    """The digits recipe, 2 epochs of 17 batches, Ctrl-C after batch 20 (epoch 2, batch 3); the printed command,
    run as printed, ends with the metrics and weights of the uninterrupted run, bit for bit."""
    args = ["trainer.max_epochs=2"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir()
    cut.mkdir()
    uninterrupted = start(args, whole)
    interrupted = start(args, cut, ["-c", _INTERRUPTING.format(n=20, train=TRAIN)])
    out, err = interrupted.communicate(timeout=600)
    assert interrupted.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "attempting graceful shutdown" not in out + err
    lines = err.strip().splitlines()
    assert lines[-2].startswith("Interrupted at epoch 2, batch 3; saved ") and lines[-2].endswith(
        "(the state after the last finished batch). Continue with:")
    command = shlex.split(lines[-1])
    (run,) = run_dirs(cut)
    assert command == ["python", TRAIN, *args, f"hydra.run.dir={run.resolve()}", "trainer.resume=last"]
    assert not (run / "metrics.json").exists()
    resumed = subprocess.run([sys.executable, *command[1:]], cwd=cut, env=_env(), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # it continued (a fresh start with the same seed would end the same): epoch 2 only, from the saved state
    assert f"Resuming from {run.resolve() / 'checkpoints' / 'last.ckpt'}" in resumed.stdout
    assert "Epoch 2/2" in resumed.stdout and "Epoch 1/2" not in resumed.stdout and "Epoch 1/2" in out
    assert uninterrupted.wait(timeout=600) == 0
    (full,) = run_dirs(whole)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, run))
    for key in ("fit_seconds", "output_dir"):
        a.pop(key), b.pop(key)
    assert a == b and a["epochs"] == 2
    wa, wb = (torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (full, run))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---------------------------------------------------------------------------------------------------- devices
def test_more_cpu_processes_than_cores_warn_once_from_the_launching_process(monkeypatch, caplog):
    from lightning.pytorch.utilities import rank_zero_only

    from spaic_train import recipe

    monkeypatch.setattr(recipe, "_usable_cores", lambda: 2)
    monkeypatch.setattr(recipe, "_gpu_visible", lambda: False)
    with caplog.at_level("WARNING", logger="spaic_train.cli"):
        assert recipe.resolve_devices(4, "cpu") == 4
        assert recipe.resolve_devices(2, "cpu") == 2 and recipe.resolve_devices(-1, "auto") == 2
        monkeypatch.setattr(rank_zero_only, "rank", 1)  # a started process: says nothing
        assert recipe.resolve_devices(4, "cpu") == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["trainer.devices=4 on the CPU: 4 processes share 2 usable core(s), slower than "
                        "trainer.devices=2 would be"]


def test_labels_name_y_and_keep_their_dtype():
    """String labels: a TypeError naming ``y`` (not torch's own); float64 labels are reported as float64."""
    import numpy as np

    from spaic_train.training.checks import array_labels

    with pytest.raises(TypeError, match=r"^y: expected numbers, got an array of dtype <U3 \(e.g. 'cat'\)"):
        array_labels(torch.nn.Linear(2, 2), np.array(["cat", "dog"]), "y")
    with pytest.raises(ValueError, match="dtype torch.float64 with non-integral values"):
        array_labels(torch.nn.Linear(2, 2), np.array([0.0, 1.5]), "y")
    y = array_labels(torch.nn.Linear(2, 2), np.array([0.0, 1.0]), "y")
    assert y.dtype == torch.int64 and y.tolist() == [0, 1]
    assert array_labels(torch.nn.Linear(2, 2), np.eye(2), "y").dtype == torch.float32  # [N, C] targets
