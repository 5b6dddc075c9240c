"""``benchmarks/learning.py`` (learning parity with SpikingJelly on CIFAR-10) and ``benchmarks/gpu_check.sh``:
the pieces their claims rest on, and (slow) whole runs of their quick / dry-run modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from extras import require

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
require("spikingjelly", "peers")  # benchmarks/learning.py builds its peer networks with it
learning = require("learning", "peers")

TINY = dict(learning.QUICK, width=4, hidden=16, T=3)


def test_augment_is_a_padded_random_crop_with_flips():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = learning.augment(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flips = 0
    for i in range(64):
        windows = [padded[i, :, r:r + 32, c:c + 32] for r in range(9) for c in range(9)]
        same = any(torch.equal(out[i], w) for w in windows)
        flipped = any(torch.equal(out[i], w.flip(-1)) for w in windows)
        assert same or flipped
        flips += flipped and not same
    assert 16 < flips < 48   # about half of the images are flipped


def test_spikingjelly_twin_computes_the_same_network():
    """The SpikingJelly rebuild of the recipe's network, with our weights copied in, gives the same spikes in every
    layer and the same logits (float64: exact up to the last ulp of the logits)."""
    torch.manual_seed(0)
    ours, cfg = learning.build_ours(TINY, 2, model_vars=learning.parity_overrides(TINY))
    sj = learning.build_spikingjelly(ours, cfg, TINY, 2)
    assert sum(p.numel() for p in ours.net.parameters()) == sum(p.numel() for p in sj.net.parameters())
    check = learning.check_same_outputs(ours, sj, torch.randn(16, 3, 32, 32))
    assert check["layers"] == 7 and check["spike_agreement"] == 1.0 and check["max_logit_diff"] < 1e-9
    assert all(0.01 < r < 0.6 for r in check["rates"][:-1])   # spiking, not silent or saturated


def test_both_frameworks_draw_the_same_dropout_masks():
    """Same RNG state → same dropout masks (ours: bernoulli_(1-p)/(1-p); SpikingJelly: F.dropout of ones), so the
    two training runs of a seed differ only by floating-point rounding."""
    torch.manual_seed(0)
    ours, cfg = learning.build_ours(TINY, 2, model_vars=learning.parity_overrides(TINY))
    sj = learning.build_spikingjelly(ours, cfg, TINY, 2)
    ours.net.double().train(), sj.net.double().train()
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    torch.manual_seed(7)
    out_a = ours.output(x)
    torch.manual_seed(7)
    out_b = sj.output(x)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=1e-9)
    torch.manual_seed(8)   # and another RNG state gives other masks: the comparison can fail
    assert (ours.output(x) - out_b).abs().max() > 1e-3


# ------------------------------------------------------------------------------ --precision-compare (bf16 vs fp32)
INTEL_SPR = "avx2 fma avx512f avx512bw avx512_bf16 amx_bf16 amx_tile avx512_fp16".split()
AMD_ZEN3 = "avx2 fma f16c sse4_2".split()


def test_bf16_flags_decide_whether_bf16_is_measured():
    assert learning.bf16_flags(INTEL_SPR) == {"avx512f": True, "avx512_bf16": True, "amx_bf16": True,
                                              "amx_tile": True}
    assert learning.bf16_flags(AMD_ZEN3) == dict.fromkeys(learning.BF16_FLAGS, False)
    assert learning.bf16_unmeasured(INTEL_SPR) is None
    assert learning.bf16_unmeasured(AMD_ZEN3) == "bf16: not measured (CPU lacks avx512_bf16)"
    # AVX-512 without its BF16 extension (e.g. Skylake-X, Zen 4 reports avx512_bf16 itself) is not enough
    assert learning.bf16_unmeasured(["avx512f", "avx512bw", "amx_tile"]) is not None


def test_precision_compare_on_a_cpu_without_avx512_bf16_says_not_measured(monkeypatch, tmp_path, capsys):
    """No training and no data read (the --data path does not exist): one line, the flags in the JSON, exit 0."""
    monkeypatch.setattr(learning, "cpu_flags", lambda: AMD_ZEN3)
    out = tmp_path / "precision.json"
    assert learning.main(["--precision-compare", "--data", str(tmp_path / "absent"), "--json", str(out)]) == 0
    assert "bf16: not measured (CPU lacks avx512_bf16)" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["measured"] is False and res["info"]["bf16_flags"] == dict.fromkeys(learning.BF16_FLAGS, False)


def test_precision_pair_differs_only_in_autocast():
    """The fp32 and bf16 trainees start from the same weights; the bf16 one computes its convolutions in bf16."""
    pair = learning.build_precision_pair(TINY, seed=3)
    assert [t.name for t in pair] == [learning.FP32, learning.BF16]
    assert [t.amp_dtype for t in pair] == [None, torch.bfloat16]
    a, b = (t.net.state_dict() for t in pair)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(4, 3, 32, 32)
    seen = {}
    for t in pair:
        conv = t.net.connections[0]
        hook = conv.synapses[1].register_forward_hook(lambda m, i, o, name=t.name: seen.update({name: i[0].dtype}))
        t.net.eval()
        with torch.no_grad(), t.autocast():
            t.output(x)
        hook.remove()
    assert seen == {learning.FP32: torch.float32, learning.BF16: torch.bfloat16}   # the conv's output current


def test_precision_report_against_a_direct_computation():
    runs = {learning.FP32: {0: {"final_test_accuracy": 0.40, "epoch_seconds": [10.0, 12.0], "test_accuracy": [.3, .4]},
                            1: {"final_test_accuracy": 0.44, "epoch_seconds": [11.0, 30.0], "test_accuracy": [.3, .4]}},
            learning.BF16: {0: {"final_test_accuracy": 0.41, "epoch_seconds": [5.0, 9.0], "test_accuracy": [.3, .4]},
                            1: {"final_test_accuracy": 0.422, "epoch_seconds": [6.0, 15.0], "test_accuracy": [.3, .4]}}}
    figures, table = learning.precision_report(runs, learning.summarize(runs))
    assert figures["accuracy_gap_points"] == pytest.approx(100 * (0.416 - 0.42))   # -0.4
    assert figures["ratio_time"] == pytest.approx(7.5 / 11.5)                     # medians of all epochs
    assert figures["ratio_time_paired"] == pytest.approx((0.5 + 0.545454) / 2, abs=1e-5)   # 0.5, .75, .545, .5
    assert figures["within_half_point"]
    assert "| 1 | 44.00 % | 42.20 % | -1.80 | 11.0, 30.0 | 6.0, 15.0 | 0.52 |" in table
    runs[learning.BF16][0]["final_test_accuracy"] = 0.398   # mean 0.41: 1.0 point below fp32
    figures, _ = learning.precision_report(runs, learning.summarize(runs))
    assert figures["accuracy_gap_points"] == pytest.approx(-1.0) and not figures["within_half_point"]


@pytest.mark.slow
def test_precision_compare_quick_mode(tmp_path, shared_data):
    """``python benchmarks/learning.py --precision-compare --quick``: fp32 and bf16-mixed both learn above chance on
    real CIFAR-10 and the report's figures are those of the per-seed results."""
    data = shared_data / "cifar10-jpeg"
    if not (data / "CIFAR-10-images_train.tar").is_file():
        pytest.skip(f"CIFAR-10 JPEG tars not found under {data}")
    if learning.bf16_unmeasured(learning.cpu_flags()):
        pytest.skip("the CPU lacks avx512_bf16 (the no-flag path is tested with mocked flags)")
    out = tmp_path / "precision.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "learning.py"), "--precision-compare", "--quick",
                           "--data", str(data), "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["info"]["bf16_flags"]["avx512_bf16"]
    finals = {fw: [r["final_test_accuracy"] for r in res["runs"][fw].values()] for fw in (learning.FP32, learning.BF16)}
    assert all(a > 0.15 for f in finals.values() for a in f)
    gap = 100 * (sum(finals[learning.BF16]) - sum(finals[learning.FP32])) / len(finals[learning.FP32])
    assert res["summary"]["accuracy_gap_points"] == pytest.approx(gap)
    assert "| mean |" in res["markdown"] and "avx512_bf16 yes" in res["markdown"]


@pytest.mark.slow
def test_learning_quick_mode(tmp_path):
    """``python benchmarks/learning.py --quick`` (<= 5 min): both frameworks learn above chance on real CIFAR-10."""
    data = ROOT.parent / "shared" / "data" / "cifar10-jpeg"
    if not (data / "CIFAR-10-images_train.tar").is_file():
        pytest.skip(f"CIFAR-10 JPEG tars not found under {data}")
    out = tmp_path / "learning.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "learning.py"), "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["checks"][0]["spike_agreement"] == 1.0
    for fw in ("spaic_train", "spikingjelly"):
        s = res["summary"][fw]
        assert s["final_mean"] > 0.15 and len(s["mean_curve"]) == res["spec"]["epochs"]
    assert "| spaic_train |" in res["markdown"] and res["info"]["total_minutes"] < 5


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path, shared_data):
    """``bash benchmarks/gpu_check.sh --dry-run`` runs end to end on the CPU and labels nothing as a GPU figure; with
    the CIFAR-10 tars it also runs the real data path (decoded cache, the recipe's augmentation, num_workers auto)."""
    data = shared_data / "cifar10-jpeg"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path),
                           "--data", str(data)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, SPAIC_TRAIN_CACHE=str(tmp_path / "cache")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["dry_run"] and res["pytest"]["ran"] and res["pytest"]["failures"] == res["pytest"]["errors"] == 0
    if not torch.cuda.is_available():
        assert res["pytest"]["skipped"] == res["pytest"]["tests"] >= 8   # the CUDA tests, skipped on the CPU
    assert res["lif"]["spike_agreement"] == 1.0 and res["lif"]["ratio_ours_over_sj"] > 0
    for recipe in ("cifar_snn", "cifar_resnet19"):
        e = res["epochs"][recipe]
        assert e["epoch_seconds_extrapolated"] == pytest.approx(e["seconds_per_batch"] * e["batches_per_epoch"])
        assert e["batches_per_epoch"] == -(-45_000 // e["batch"])
        r = e["real_data"]
        assert r["measured"] == data.is_dir()
        if r["measured"]:
            assert r["decode_once"] and r["autoaugment"] == "cifar10" and r["cutout"] == 16 and r["timed_batches"] == 3
            assert r["real_over_synthetic"] == pytest.approx(r["seconds_per_batch"] / e["seconds_per_batch"])
    md = (tmp_path / "gpu_check.md").read_text()
    assert "DRY RUN" in md and "NOT GPU figures" in md and "extrapolated" in md and "a slice of a real epoch" in md
