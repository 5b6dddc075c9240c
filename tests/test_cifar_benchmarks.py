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
