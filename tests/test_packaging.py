"""Install extras: ``pip install -e ".[dev]"`` runs the suite without the peer libraries (their tests skip with
a reason); ``.[peers]`` adds them, and CI installs both; docs without machine paths."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PEERS = ("snntorch", "spikingjelly", "norse")


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_peers_are_their_own_extra_and_ci_installs_them():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert not _names(extras["dev"]) & set(PEERS)
    assert _names(extras["peers"]) == set(PEERS)
    # [dev,nir] alone runs the cross-framework NIR test against snnTorch's own exporter
    assert {"nir", "nirtorch", "snntorch"} <= _names(extras["nir"])
    assert not _names(extras["nir"]) & {"spikingjelly", "norse"}
    assert "spaic_train[peers]" in extras["bench"] and "psutil" in _names(extras["bench"])
    ci_extras = re.search(r'pip install -e "\.\[([a-z,]+)\]"', (REPO / ".ci" / "run").read_text()).group(1)
    assert set(extras) - {"bench"} <= set(ci_extras.split(","))  # CI runs the tests of every extra


def _pytest_without_peers(*args: str) -> subprocess.CompletedProcess:
    """``pytest *args`` in a subprocess where the peer libraries cannot be imported (``sys.modules[name] = None``),
    as after ``pip install -e ".[dev]"``."""
    code = (f"import sys; sys.modules.update(dict.fromkeys({PEERS!r})); import pytest; "
            f"sys.exit(pytest.main({list(args)!r}))")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def test_parity_tests_skip_naming_the_missing_peer():
    res = _pytest_without_peers("-q", "-rs", "tests/test_neurons.py", "-k", "snntorch or spikingjelly")
    assert res.returncode == 0, res.stdout[-3000:]
    assert "2 skipped" in res.stdout
    assert "could not import 'snntorch'" in res.stdout and "could not import 'spikingjelly'" in res.stdout
    assert res.stdout.count("pip install 'spaic_train[peers]'") == 2  # and the extra that installs it


@pytest.mark.slow
def test_every_test_module_imports_without_the_peers():
    res = _pytest_without_peers("--collect-only", "-q", "tests")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_docs_hold_no_machine_paths():
    """Docs link files of the repository, not paths of the machine they were written on."""
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "benchmarks").glob("*.md"))]
    for doc in docs:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            assert not re.search(r"(?<![\w.~])/(work|root|home|tmp|Users)/", line), f"{doc.name}:{n}: {line}"
