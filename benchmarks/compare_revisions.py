"""spaic_train at two git revisions, timed back to back: did a change make training slower?

    python benchmarks/compare_revisions.py 0c5775f HEAD --workloads lif,fc,conv,delay-feedback --pairs 3

Each revision is checked out into a temporary git worktree.  For every pair, each revision's own
``benchmarks/run.py`` (which puts its checkout first on ``sys.path``) runs the spaic_train workloads once
(``--frameworks spaic_train --no-check --rounds 1``); the order within a pair alternates, so load on the machine
hits both alike.  Printed: per workload the median of the per-pair medians (ms per training iteration) and the ratio
new / old, with the date and CPU.  Each revision compiles its numba kernels once, in a warm-up run before timing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def _worktree(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(where), rev], check=True,
                   capture_output=True)
    return where


def _run(tree: Path, workloads: str, args: argparse.Namespace, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(tree / "benchmarks" / "run.py"), "--workloads", workloads,
           "--frameworks", "spaic_train", "--no-check", "--iters", str(args.iters), "--warmup", str(args.warmup),
           "--rounds", "1", "--threads", str(args.threads), "--json", str(out)]
    subprocess.run(cmd, cwd=tree, env=env, check=True, capture_output=True, text=True)
    results = json.loads(out.read_text())["results"]
    return {w: r["spaic_train"]["median_ms"] for w, r in results.items() if "spaic_train" in r}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--workloads", default="lif,fc,conv,delay-feedback")
    ap.add_argument("--pairs", type=int, default=3, help="interleaved pairs of runs (default 3)")
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.pairs < 1:
        ap.error(f"--pairs must be >= 1, got {args.pairs}")
    with tempfile.TemporaryDirectory(prefix="spaic_compare_") as tmp:
        tmp = Path(tmp)
        trees = {"old": _worktree(args.old, tmp / "old"), "new": _worktree(args.new, tmp / "new")}
        try:
            for name, tree in trees.items():  # compile each revision's numba kernels outside the timing
                _run(tree, "lif", argparse.Namespace(iters=1, warmup=0, threads=args.threads),
                     tmp / f"warm-{name}.json")
            times: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
            for pair in range(args.pairs):
                for name in (("old", "new") if pair % 2 == 0 else ("new", "old")):
                    got = _run(trees[name], args.workloads, args, tmp / f"{name}-{pair}.json")
                    for w, ms in got.items():
                        times[name].setdefault(w, []).append(ms)
                    print(f"pair {pair + 1}/{args.pairs} {name}: "
                          + ", ".join(f"{w} {ms:.1f} ms" for w, ms in got.items()), flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
    print(f"\n{datetime.date.today()}, {_cpu()}, {os.cpu_count()} cores, {args.threads} threads, {args.pairs} pairs "
          f"x {args.iters} iterations; median of per-run medians, ms per training iteration")
    print(f"| workload | {args.old} | {args.new} | new / old |\n|---|---|---|---|")
    for w in times["old"]:
        old, new = statistics.median(times["old"][w]), statistics.median(times["new"].get(w, [float("nan")]))
        print(f"| `{w}` | {old:.1f} | {new:.1f} | {new / old:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
