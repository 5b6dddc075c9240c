"""The documentation runs as printed: every shell command and Python block of README.md, docs/*.md and
benchmarks/README.md is run by a test, verbatim.

What is collected: fenced ```bash / ```sh / ```python blocks, and the README's 4-space indented command blocks.
A shell block is split into commands (one per line, ``\\`` continuations joined; a paragraph starting with ``#!`` is
one script); a Python block is one script.

How they run:

* shell commands in a fresh temporary directory that holds links to the repository's ``train.py``, ``conf/``,
  ``recipes/``, ``benchmarks/``, ``tests/``, ``pyproject.toml`` and ``spaic_train/`` (what a user has in the root of
  a clone), with this checkout's package first on ``PYTHONPATH``; so ``outputs/`` and ``multirun/`` land there
  and vanish with it.  The only change to a command: ``python train.py`` runs that train get ``trainer.max_epochs=1``
  appended (unless the command sets it);
* Python blocks in-process as a script (``__name__ == "__main__"``), in a temporary working directory; a block that
  imports an optional package skips naming the extra that installs it.

A command or block that cannot run here carries a visible ``no-test: <reason>`` comment in the docs; every such
tag must be listed, with the same reason, in :data:`NO_TEST` (a new tag fails until it is reviewed here).  Commands
too slow for the default suite are listed in :data:`SLOW` and run under ``pytest -m slow``; :data:`XFAIL` holds
commands known to fail today.  A listed command that no longer appears in the docs fails the test, so the lists
stay true.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from extras import require

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md"]

#: fenced-block languages that hold commands / code; other labelled fences (yaml, text, ...) are not run
SHELL_LANGS = ("bash", "sh", "shell", "console")
PYTHON_LANGS = ("python", "py")
#: what links into a shell command's working directory (a clone's root)
ROOT_ENTRIES = ("train.py", "conf", "recipes", "benchmarks", "tests", "pyproject.toml", "spaic_train")
#: the size override appended to a training run of ``python train.py``
SIZE_OVERRIDE = "trainer.max_epochs=1"
#: optional packages a Python block may import → the extra that installs them
EXTRAS = {"nir": "nir", "nirtorch": "nir", "snntorch": "nir", "spikingjelly": "peers", "norse": "peers",
          "matplotlib": "plot", "pandas": "plot"}

#: reviewed ``no-test`` tags: command (without its comment) or Python block key → the reason printed in the docs
NO_TEST = {
    'pip install -e ".[dev]"': "installs packages",
    "pytest": "the test suite itself",
    "python train.py recipe=mnist_fc paths.data=/data": "/data stands for your dataset folder",
    "python train.py recipe=cifar_snn data.format=folder data.root=/data/cifar10-jpeg":
        "needs the CIFAR-10 files and a GPU",
    "torchrun --nnodes=2 --node_rank=0 --nproc_per_node=1 --master_addr=10.0.0.1 --master_port=29500 "
    "train.py trainer.num_nodes=2 trainer.devices=1 hydra.run.dir=/shared/runs/digits":
        "two machines (tested as two local nodes: pytest -m slow tests/test_ddp.py -k torchrun)",
    "torchrun --nnodes=2 --node_rank=1 --nproc_per_node=1 --master_addr=10.0.0.1 --master_port=29500 "
    "train.py trainer.num_nodes=2 trainer.devices=1 hydra.run.dir=/shared/runs/digits":
        "two machines (tested as two local nodes: pytest -m slow tests/test_ddp.py -k torchrun)",
    "srun python train.py trainer=slurm hydra.run.dir=$HOME/runs/digits_snn_$SLURM_JOB_ID": "needs a SLURM cluster",
    "sbatch digits_snn.sbatch": "needs a SLURM cluster",
    "python benchmarks/recipes.py digits_snn mnist_fc nmnist --seeds 0 1 2 --data ../shared/data":
        "needs MNIST and N-MNIST under ../shared/data; about an hour",
    'pip install -e ".[bench]"': "installs packages",
    "bash benchmarks/gpu_check.sh": "needs a CUDA GPU",
}

#: commands for ``pytest -m slow`` only → why
SLOW = {
    "python train.py trainer=ddp": "two training processes",
    "python train.py trainer=ddp trainer.devices=2": "two training processes",
    "python benchmarks/recipes.py digits_snn --seeds 0 --threads 1 -- trainer.max_epochs=3": "a 3-epoch recipe run",
    "python benchmarks/run.py": "the full benchmark (~30 min)",
    "python benchmarks/run.py --fastpath": "the full benchmark",
    "python benchmarks/run.py --quick --fastpath": "1-2 min",
    "python benchmarks/run.py --memory --workloads fc --frameworks spaic_train": "minutes",
    "python benchmarks/run.py --workloads '' --learned-delays --no-check": "minutes",
    "python benchmarks/run.py --workloads fc,conv --frameworks spaic_train,spikingjelly --iters 20 --threads 4":
        "minutes",
    "python benchmarks/learning.py": "CIFAR-10 training, <= 40 min",
    "python benchmarks/learning.py --quick": "CIFAR-10 training, minutes",
    "python benchmarks/learning.py --recipes": "CIFAR-10 training, ~12 min",
    "python benchmarks/learning.py --precision-compare": "CIFAR-10 training in float32 and bf16, 3 seeds",
    "bash benchmarks/gpu_check.sh --dry-run": "runs CUDA test selections and benchmarks at tiny sizes",
    "python benchmarks/run.py --workloads conv --long-t": "the conv net at T = 4, 16, 64 in five frameworks",
    "python benchmarks/memory_scaling.py": "one process per T up to 64",
    "python benchmarks/memory_scaling.py --saved-bytes --T 4,16 --batch 4": "a minute",
    "python benchmarks/event_loading.py --data ../shared/data --repeats 3": "three epochs of N-MNIST per loader",
    "python benchmarks/loader.py": "5 rounds over 4,500 CIFAR-10 images, a few minutes",
    "python benchmarks/compare_revisions.py 0c5775f HEAD --pairs 2 --iters 5": "two checkouts, 4 benchmark runs",
}

#: commands that fail as printed today → the reason (strict: once they pass, the mark must go)
XFAIL = {
}


@dataclass(frozen=True)
class Unit:
    """One runnable thing of the docs: a shell command (or script) or a Python block."""

    kind: str          # "shell" | "python"
    text: str          # as printed (continuations joined for commands)
    key: str           # shell: the command without its comment; python: its first statement after the imports
    where: str         # file:line
    tag: str | None    # the reason of a ``no-test:`` tag, or None

    @property
    def id(self) -> str:
        return f"{self.where} {self.key[:60]}"


_TAG = re.compile(r"no-test:\s*(.+?)\s*$")
_COMMENT = re.compile(r"\s+#\s.*$")


def _tag(text: str) -> str | None:
    tags = [m.group(1) for line in text.splitlines() if (m := _TAG.search(line))]
    return tags[0] if tags else None


def _shell_units(lines: list[str], path: str, first_line: int) -> list[Unit]:
    units = []
    paragraph: list[tuple[int, str]] = []

    def flush():
        if not paragraph:
            return
        if paragraph[0][1].startswith("#!"):  # a script file printed whole: one unit
            text = "\n".join(t for _, t in paragraph)
            body = [t for _, t in paragraph if t.strip() and not t.lstrip().startswith("#")]
            units.append(Unit("shell", text, _COMMENT.sub("", body[0]).strip(), f"{path}:{paragraph[0][0]}",
                              _tag(text)))
        else:
            pending, start = "", None
            for no, t in paragraph:
                if not pending and (not t.strip() or t.lstrip().startswith("#")):
                    continue
                start = start or no
                if t.rstrip().endswith("\\"):
                    pending += t.rstrip()[:-1].rstrip() + " "
                    continue
                command = pending + t.strip()
                pending = ""
                key = " ".join(_COMMENT.sub("", command).split())
                units.append(Unit("shell", command, key, f"{path}:{start}", _tag(command)))
                start = None
        paragraph.clear()

    for i, line in enumerate(lines):
        if not line.strip():
            flush()
        else:
            paragraph.append((first_line + i, line))
    flush()
    return units


def _python_unit(lines: list[str], path: str, first_line: int) -> Unit:
    text = "\n".join(lines) + "\n"
    statements = [t for t in lines if t.strip() and not t.startswith(("import ", "from ", "#"))]
    return Unit("python", text, statements[0].strip(), f"{path}:{first_line}", _tag(text))


def collect(path: Path) -> list[Unit]:
    """The runnable units of one Markdown file of the repository."""
    return collect_text(path.read_text(), str(path.relative_to(REPO)))


def collect_text(text: str, rel: str) -> list[Unit]:
    """The runnable units of Markdown ``text`` (fenced blocks; 4-space indented blocks outside lists)."""
    lines = text.splitlines()
    units: list[Unit] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(\s*)```(\S*)", line)
        if fence:
            lang = fence.group(2).lower()
            j = i + 1
            while not lines[j].lstrip().startswith("```"):
                j += 1
            body = [b[len(fence.group(1)):] for b in lines[i + 1:j]]
            if not lang:
                raise AssertionError(f"{rel}:{i + 1}: a fenced block without a language; label it (bash, python, "
                                     "or text/yaml/... for one that is not run)")
            if lang in SHELL_LANGS:
                units += _shell_units(body, rel, i + 2)
            elif lang in PYTHON_LANGS:
                units.append(_python_unit(body, rel, i + 2))
            i = j + 1
            continue
        previous = lines[i - 1] if i else ""
        in_list = False
        if line.startswith("    ") and not previous.strip():
            k = i - 1  # an indented paragraph after a list item continues the list, unless a non-list line is between
            while k >= 0 and not lines[k].strip():
                k -= 1
            in_list = k >= 0 and (bool(re.match(r"^\s*([-*+]|\d+\.)\s", lines[k])) or lines[k].startswith("  "))
        if line.startswith("    ") and not previous.strip() and not in_list:
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            while not lines[j - 1].strip():
                j -= 1
            units += _shell_units([b[4:] for b in lines[i:j]], rel, i + 1)
            i = j
            continue
        i += 1
    return units


UNITS = [u for doc in DOCS for u in collect(doc)]


def _runnable(kind):
    """The units of ``kind`` to run, each command once (the README prints ``python train.py`` twice)."""
    out, seen = [], set()
    for u in UNITS:
        if u.kind != kind or u.tag is not None or u.key in seen:
            continue
        seen.add(u.key)
        marks = []
        if u.key in SLOW:
            marks.append(pytest.mark.slow)
        if u.key in XFAIL:
            marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[u.key]))
        out.append(pytest.param(u, id=u.id, marks=marks))
    return out


# -------------------------------------------------------------------------------------------- the lists are true
def test_the_docs_hold_the_expected_blocks():
    """The collector sees the README's blocks (fenced and indented): a parser that found nothing would pass all."""
    keys = {u.key for u in UNITS}
    for expected in ("python train.py", "python train.py --help", "python train.py trainer=ddp",
                     "sbatch digits_snn.sbatch", "python benchmarks/learning.py --quick", "class Net(spaic.Network):",
                     "digits = load_digits()"):
        assert expected in keys, expected
    assert sum(u.kind == "python" for u in UNITS) >= 3


def test_every_no_test_tag_is_reviewed():
    tagged = {u.key: u.tag for u in UNITS if u.tag is not None}
    unreviewed = {k: v for k, v in tagged.items() if NO_TEST.get(k) != v}
    assert not unreviewed, f"no-test tags not in NO_TEST (or with another reason): {unreviewed}"
    stale = sorted(set(NO_TEST) - set(tagged))
    assert not stale, f"NO_TEST entries whose command has no no-test tag in the docs (any more): {stale}"


def test_slow_and_xfail_lists_name_existing_commands():
    keys = {u.key for u in UNITS if u.tag is None}
    for name, listed in (("SLOW", SLOW), ("XFAIL", XFAIL)):
        stale = sorted(set(listed) - keys)
        assert not stale, f"{name} lists commands that are not (runnable) in the docs any more: {stale}"


def test_collector_on_a_sample_document():
    doc = "\n".join([
        "Intro.", "", "```bash", "python a.py --x 1   # a comment", "python b.py \\", "    --y 2", "```", "",
        "- a list item", "", "    continued list text, not code", "", "A paragraph.", "",
        "    python c.py   # no-test: needs a cluster", "", "    #!/bin/bash", "    #SBATCH -N 2", "    srun d",
        "", "```python", "import torch", "x = torch.ones(2)", "```", "", "```yaml", "a: 1", "```"])
    units = collect_text(doc, "sample.md")
    assert [(u.kind, u.key, u.tag) for u in units] == [
        ("shell", "python a.py --x 1", None), ("shell", "python b.py --y 2", None),
        ("shell", "python c.py", "needs a cluster"), ("shell", "srun d", None), ("python", "x = torch.ones(2)", None)]
    assert units[3].text.startswith("#!/bin/bash\n#SBATCH -N 2")
    with pytest.raises(AssertionError, match="without a language"):
        collect_text("```\nls\n```", "bad.md")


def test_size_override_is_appended_to_training_runs_only():
    assert _with_size_override("python train.py -m a=1,2   # sweep") == "python train.py -m a=1,2 " + SIZE_OVERRIDE
    assert _with_size_override("python train.py trainer.max_epochs=3") == "python train.py trainer.max_epochs=3"
    assert _with_size_override("python train.py --cfg job   # print") == "python train.py --cfg job"
    assert _with_size_override("python benchmarks/run.py --quick") == "python benchmarks/run.py --quick"


# ------------------------------------------------------------------------------------------------- running them
def _with_size_override(command: str) -> str:
    """``command`` without its comment, plus the size override for a training run of ``train.py``."""
    bare = _COMMENT.sub("", command).strip()
    words = bare.split()
    trains = "train.py" in words and not {"--help", "--cfg", "-h"} & set(words)
    if trains and not any(w.startswith("trainer.max_epochs=") for w in words):
        bare += " " + SIZE_OVERRIDE
    return bare


def _user_files(text: str, cwd: Path) -> None:
    """Write what a block's reader has on disk before running it (reviewed list: :data:`USER_FILES`)."""
    for marker, make in USER_FILES.items():
        if marker in text:
            make(cwd)


def _tiny_shd(cwd: Path) -> None:
    require("tonic", "events")  # the block reads event data: skip, naming the extra, without it
    require("h5py", "events")
    from event_files import make_shd  # tiny SHD files in the release's HDF5 layout

    make_shd(cwd / "data" / "shd", n=40)


#: blocks that read a user's dataset files → what writes tiny ones in the release's real format first
USER_FILES = {'build_datamodule("shd", root="data/shd"': _tiny_shd}


def _checkout_dir(tmp_path: Path) -> Path:
    """A folder laid out like a checkout (links to the repository's files) with ``../shared`` beside it, as the
    README's commands assume."""
    cwd = tmp_path / "checkout"
    cwd.mkdir()
    for name in ROOT_ENTRIES:
        (cwd / name).symlink_to(REPO / name)
    shared = REPO.parent / "shared"
    if shared.exists():
        (tmp_path / "shared").symlink_to(shared)
    return cwd


@pytest.mark.parametrize("unit", _runnable("shell"))
def test_shell_command_runs_as_printed(unit: Unit, tmp_path):
    tmp_path = _checkout_dir(tmp_path)
    _user_files(unit.text, tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = _with_size_override(unit.text)
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=3000 if unit.key in SLOW else 600)
    assert done.returncode == 0, (f"{unit.where}: `{command}` exited with {done.returncode}\n"
                                  f"--- stdout (end) ---\n{done.stdout[-3000:]}\n--- stderr (end) ---\n"
                                  f"{done.stderr[-3000:]}")
    if "train.py" in command.split() and SIZE_OVERRIDE in command:  # a training run: its files went here
        assert list(tmp_path.glob("*/**/metrics.json")), f"`{command}` wrote no metrics.json under its cwd"


@pytest.mark.parametrize("unit", _runnable("python"))
def test_python_block_runs_as_printed(unit: Unit, tmp_path, monkeypatch):
    imported = set(re.findall(r"^(?:import|from)\s+([A-Za-z_]\w*)", unit.text, flags=re.M))
    for module in sorted(imported & set(EXTRAS)):
        require(module, EXTRAS[module])
    _user_files(unit.text, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPAIC_TRAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", [unit.where])
    code = compile(unit.text, f"<{unit.where}>", "exec")
    exec(code, {"__name__": "__main__"})  # noqa: S102 - the block is the repository's own documentation
