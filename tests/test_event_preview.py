"""TensorBoard event-frame preview (issue 21, item 7)."""

from __future__ import annotations

import pytest
import torch
from test_cli import composed

from spaic_train.cli import run
from spaic_train.monitoring.event_frames import EventFramePreview, event_frames_image


def test_frames_image_layout_and_colours():
    x = torch.zeros(10, 2, 3, 4)
    x[0, 1, 0, 0] = 4.0  # ON event, first frame
    x[9, 0, 2, 3] = 2.0  # OFF event, last frame
    img = event_frames_image(x, n_frames=3)
    assert img.shape == (3, 3, 3 * 4 + 2)  # frames 0, 4/5, 9 side by side with 1-pixel gaps
    assert img[:, 0, 0].tolist() == [1.0, 0.0, 0.0]         # red, scaled by the sample's peak
    assert img[:, 2, 13].tolist() == [0.0, 0.5, 0.0]        # green, half the peak
    assert img[:, :, 4].eq(1).all() and img[:, :, 9].eq(1).all()  # white gaps
    audio = event_frames_image(torch.eye(5, 7), scale=2)
    assert audio.shape == (3, 14, 10) and audio[0, 0, 0] == 1 and audio[0, 0, 2] == 0  # channels x time
    with pytest.raises(ValueError, match="n_frames must be an int >= 1"):
        EventFramePreview(n_frames=0)


def test_a_run_logs_the_preview_to_tensorboard(tmp_path):
    pytest.importorskip("tonic", reason="event data needs the 'events' extra: pip install 'spaic_train[events]'")
    from event_files import make_gesture
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_gesture(tmp_path / "data")
    cfg = composed("recipe=dvs_gesture", f"data.root={tmp_path / 'data'}", f"data.cache_dir={tmp_path / 'cache'}",
                   "data.batch_size=2", "data.time_steps=3", "data.val_fraction=0.34", "model.vars.width=4",
                   "model.vars.hidden=16", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                   "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.accelerator=cpu",
                   "trainer.enable_progress_bar=false", "trainer.checkpoint=false", "summary=false")
    run(cfg, tmp_path / "run")
    files = list((tmp_path / "run").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(files[0].parent), size_guidance={"images": 0})
    acc.Reload()
    assert "event_frames/sample_0" in acc.Tags()["images"]
    image = acc.Images("event_frames/sample_0")[0]
    assert (image.height, image.width) == (256, 3 * 256 + 2 * 2)  # 3 frames of 128x128 at scale 2, 1-px gaps x2
