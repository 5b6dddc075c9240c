#!/usr/bin/env bash
# GPU check, ready to run on one GPU (<= 8 minutes): writes OUT/gpu_check.json and OUT/gpu_check.md with
#   1. the CUDA tests: tests/test_triton_lif.py and every other test with "cuda" in its name (pytest -k cuda);
#   2. the `lif` benchmark at 65,536 neurons (T=256, batch 32): spaic_train's Triton kernels vs SpikingJelly's
#      fastest CUDA kernel, and their ratio;
#   3. the long-T memory row: the conv net (width 64, batch 16) at T=16 and T=64, peak CUDA memory and time of one
#      training iteration, spaic_train vs SpikingJelly;
#   4. cifar_snn and cifar_resnet19 at full width, bf16 autocast, batch 64: timed training batches extrapolated to
#      one epoch and to the recipe's max_epochs (labelled as extrapolated); then a slice of a real epoch through
#      the real data path (the CIFAR-10 JPEG tars in DIR, the recipe's augmentation, num_workers: auto) next to
#      the synthetic-input time, and whether the run is loader-bound.
# Details: benchmarks/gpu_check.py.
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--data DIR]   # default out: benchmarks/results/gpu_check;
#                                                # data: $SPAIC_TRAIN_DATA/cifar10-jpeg or ../shared/data/cifar10-jpeg
#   bash benchmarks/gpu_check.sh --dry-run       # the whole script on the CPU at tiny sizes, no CUDA needed
#                                                # (CUDA tests are skipped; figures are not GPU figures)
set -uo pipefail
cd "$(dirname "$0")/.."
out="benchmarks/results/gpu_check"
dry=()
data=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=(--dry-run) ;;
    --out) out="$2"; shift ;;
    --data) data=(--data "$2"); shift ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --dry-run, --out DIR, --data DIR)" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python="${PYTHON:-python}"

echo "== CUDA tests"
"$python" -m pytest tests/test_triton_lif.py tests/test_cifar_recipes.py -k cuda -q -p no:cacheprovider \
  --junitxml "$out/pytest.xml" 2>&1 | tee "$out/pytest.log" | tail -n 5
pytest_rc=${PIPESTATUS[0]}

echo "== benchmarks"
"$python" benchmarks/gpu_check.py --out "$out" --pytest-xml "$out/pytest.xml" --pytest-rc "$pytest_rc" "${dry[@]}" "${data[@]}"
bench_rc=$?
echo "== summary: $out/gpu_check.md, $out/gpu_check.json (pytest exit code $pytest_rc)"
[ "$bench_rc" -eq 0 ] && [ "$pytest_rc" -eq 0 ]
