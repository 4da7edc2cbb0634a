"""The background publisher: order per tag, bounded memory (images dropped before records, never a
record), and nothing lost when training raises."""
import json
import warnings as warnings_module
import threading
import time

import lightning as L
import numpy as np
import pytest
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.builders import grouped
from lightning_saliency import SaliencyMonitor
from lightning_saliency.demo import Shortcut, TextClassifier, build_demo
from lightning_saliency.monitor.publishing import NullSink, Publisher
from lightning_saliency.monitor.worker import BackgroundWorker
from tests.builders import quiet_trainer, synthetic_run as run


class SlowSink(NullSink):
    """Takes images slowly from the worker thread, and remembers what came in which order."""

    takes_images = True

    def __init__(self, delay=0.0):
        self.delay, self.calls, self.threads = delay, [], set()

    def image(self, tag, image, step):
        time.sleep(self.delay)
        self.calls.append(("image", tag, step))
        self.threads.add(threading.current_thread().name)

    def text(self, tag, markdown, step):
        self.calls.append(("text", tag, step))

    def scalars(self, values, step):
        self.calls.append(("scalars", "saliency/status", step))
        self.threads.add(threading.current_thread().name)


def test_worker_runs_jobs_in_order_and_survives_a_failing_job():
    done = []
    worker = BackgroundWorker(max_pending=100)
    with warnings_module.catch_warnings(record=True) as caught:
        warnings_module.simplefilter("always")
        for k in range(20):
            worker.submit(lambda k=k: (time.sleep(0.001 * (k % 3)), done.append(k)))
            if k == 5:
                worker.submit(lambda: 1 / 0)
        assert worker.flush(timeout=10)
    warnings = [str(w.message) for w in caught]
    assert done == list(range(20))
    assert len(warnings) == 1 and "ZeroDivisionError" in warnings[0]


def test_each_tag_reaches_the_sinks_in_run_order_and_images_leave_the_training_thread(tmp_path):
    sink = SlowSink(delay=0.01)
    publisher = Publisher([sink], max_pending=100)
    for step in range(6):
        record = run(f"{step:03d}", strength=2.0, step=step)
        publisher.publish(record, tmp_path, time.perf_counter(), None)
    publisher.flush()
    for tag in {t for _, t, _ in sink.calls}:
        steps = [s for _, t, s in sink.calls if t == tag]
        assert steps == sorted(steps) and len(steps) == 6, tag
    assert "lightning-saliency-publisher" in sink.threads and threading.current_thread().name in sink.threads
    assert sorted(p.name for p in (tmp_path / "saliency").iterdir()) == [f"epoch_{s:03d}.json" for s in range(6)]


def test_a_slow_sink_loses_images_first_never_records_and_warns_once(tmp_path):
    sink = SlowSink(delay=0.3)
    publisher = Publisher([sink], max_pending=1)
    started = time.perf_counter()
    with warnings_module.catch_warnings(record=True) as caught:
        warnings_module.simplefilter("always")
        for step in range(5):
            publisher.publish(run(f"{step:03d}", strength=2.0, step=step), tmp_path, time.perf_counter(), None)
        submitting = time.perf_counter() - started
        publisher.flush()
    warnings = [str(w.message) for w in caught]
    assert submitting < 0.3 * 8  # the training thread did not wait for the 5 runs' images
    imaged = {s for kind, _, s in sink.calls if kind == "image"}
    assert 0 in imaged and len(imaged) < 5  # some runs lost their images ...
    files = sorted(p.name for p in (tmp_path / "saliency").iterdir())
    assert files == [f"epoch_{s:03d}.json" for s in range(5)]  # ... no run lost its record
    for name in files:
        assert json.loads((tmp_path / "saliency" / name).read_text())["status"] == "ok"
    assert len([w for w in warnings if "falls behind" in w]) == 1


class FailsInEpoch(TextClassifier):
    """The demo classifier, raising in the third epoch's first training step."""

    def training_step(self, batch, batch_idx):
        if self.current_epoch == 2:
            raise RuntimeError("planted training failure")
        return super().training_step(batch, batch_idx)


@pytest.mark.slow
def test_records_and_images_are_all_written_when_training_raises(tmp_path):
    L.seed_everything(0, verbose=False)
    module, data, tokenizer = build_demo(Shortcut("single"), n_train=96, n_val=24, batch_size=16)
    monitor = SaliencyMonitor(**grouped(tokenizer=tokenizer, num_examples=4, n_steps=8))
    trainer = quiet_trainer(max_epochs=4, logger=TensorBoardLogger(tmp_path, name="run"), callbacks=[monitor])
    with pytest.raises(RuntimeError, match="planted training failure"):
        trainer.fit(FailsInEpoch(module.model, lr=module.lr), datamodule=data)
    # on_exception flushed the worker: every run before the failure is on disk and in the events.
    folder = tmp_path / "run" / "version_0"
    assert sorted(p.name for p in (folder / "saliency").iterdir()) == ["epoch_000.json", "epoch_001.json",
                                                                       "epoch_start.json"]
    events = EventAccumulator(str(folder), size_guidance={"images": 0})
    events.Reload()
    for method in ("integrated_gradients", "gradient"):
        assert [e.step for e in events.Images(f"saliency/{method}/probe_set")] == [0, 6, 12]
        assert len(events.Images(f"saliency/{method}/example_03")) == 3
    assert monitor.flush() is None and not list((folder / "saliency").glob("*.tmp"))


def test_images_are_rgb_arrays_the_sinks_accept():
    from lightning_saliency.presentation.render import HeatmapRow, grid_and_row_images

    grid, crops = grid_and_row_images([HeatmapRow(["a", "b"], [1.0, -1.0], "x")], "t")
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3 and len(crops) == 1
