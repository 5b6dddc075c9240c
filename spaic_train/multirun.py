"""Seeds reported the way papers should: after ``python train.py -m seed=0,1,2`` a table of every metric's
mean ± sd over the runs, written next to them.

:class:`MultirunSummary` is a Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``).  When a multirun
ends it reads the ``metrics.json`` of every job under the sweep directory, groups the jobs by the overrides that
vary between them other than ``seed`` (one group per setting when a sweep also varies something else), and writes

* ``summary.md``: per group, one row per numeric metric: mean, sample standard deviation (``n − 1``), ``n``, min
  and max;
* ``summary.json``: the same numbers, plus the job directories of each group;

and prints the tables.  Jobs without ``metrics.json`` (failed runs) are listed as missing, not averaged.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from pathlib import Path
from typing import Any

__all__ = ["MultirunSummary", "summarize_runs", "format_summary"]

log = logging.getLogger("spaic_train")

#: metrics.json keys that describe a run rather than measure it
_NOT_METRICS = {"epochs", "output_dir", "recipe"}


def _overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    import yaml

    return [str(o) for o in (yaml.safe_load(path.read_text()) or [])]


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def summarize_runs(sweep_dir: str | Path) -> dict[str, Any]:
    """``{group: {"jobs": [...], "missing": [...], "metrics": {name: {mean, sd, n, min, max}}}}`` over the job
    folders (any depth) of ``sweep_dir`` that hold ``.hydra/overrides.yaml``.  A group is one setting of the
    overrides that vary between the jobs, ``seed`` excepted (``"all runs"`` when only the seed varies)."""
    root = Path(sweep_dir)
    jobs = [(h.parent, dict(_split(o) for o in _overrides(h.parent))) for h in sorted(root.rglob(".hydra"))
            if h.parent != root and (h / "overrides.yaml").is_file()]
    keys = {k for _, ov in jobs for k in ov if k != "seed"}
    varying = sorted(k for k in keys if len({ov.get(k) for _, ov in jobs}) > 1)
    groups: dict[str, dict[str, Any]] = {}
    for job, ov in jobs:
        key = " ".join(f"{k}={ov.get(k, '(default)')}" for k in varying) or "all runs"
        g = groups.setdefault(key, {"jobs": [], "missing": [], "values": {}})
        metrics_path = job / "metrics.json"
        if not metrics_path.is_file():
            g["missing"].append(str(job.relative_to(root)))
            continue
        g["jobs"].append(str(job.relative_to(root)))
        for name, value in json.loads(metrics_path.read_text()).items():
            if name in _NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                g["values"].setdefault(name, []).append(float(value))
    out = {}
    for key, g in groups.items():
        stats = {}
        for name, vals in g["values"].items():
            stats[name] = {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                           "n": len(vals), "min": min(vals), "max": max(vals)}
        out[key] = {"jobs": g["jobs"], "missing": g["missing"], "metrics": stats}
    return out


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.4e}"


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown tables (one per group) of :func:`summarize_runs`' output."""
    lines = []
    for key, g in summary.items():
        lines += [f"### {key}", "", f"{len(g['jobs'])} run(s): {', '.join(g['jobs']) or '-'}"
                  + (f"; missing metrics.json: {', '.join(g['missing'])}" if g["missing"] else ""), "",
                  "| metric | mean ± sd | n | min | max |", "|---|---|---|---|---|"]
        for name, s in sorted(g["metrics"].items()):
            lines.append(f"| {name} | {_fmt(s['mean'])} ± {_fmt(s['sd'])} | {s['n']} | {_fmt(s['min'])} | "
                         f"{_fmt(s['max'])} |")
        lines.append("")
    return "\n".join(lines)


def _callback_base():
    try:
        from hydra.experimental.callback import Callback
    except ImportError:  # pragma: no cover - hydra-core is a dependency
        return object
    return Callback


class MultirunSummary(_callback_base()):
    """Hydra callback: at the end of a multirun, ``summary.md`` / ``summary.json`` (mean ± sd of every metric over
    the seeds of each setting) in the sweep directory."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        summary = summarize_runs(sweep_dir)
        if not summary:
            return
        text = format_summary(summary)
        (sweep_dir / "summary.md").write_text(f"# Multirun summary: {sweep_dir}\n\n{text}")
        (sweep_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info(f"Multirun summary (mean ± sd over runs) in {sweep_dir / 'summary.md'}:\n{text}")
