"""A task is one file: a new module that subclasses Task and registers it is all a fit needs,
the probe's rows included (the seam the monitor asks instead of branching on the task's kind)."""
import importlib
import sys
import textwrap

import lightning as L
import pytest

from lightning_saliency import SaliencyMonitor
from lightning_saliency.demo import build_demo

pytestmark = pytest.mark.slow

TASK_FILE = textwrap.dedent('''
    """Positives only: a binary classifier's margin, attributed on the positive probe examples."""
    import torch

    from lightning_saliency.tasks import Task, register_task


    @register_task
    class PositivesMargin(Task):
        name = "positives_margin_one_file"
        text_label_evidence = True

        def head(self, logits, last_positions, targets):
            self.expect_dims(logits, 2, self.name, "a binary classifier's logits are (batch, 2).")
            return torch.stack([logits[:, 0] - logits[:, 1], logits[:, 1] - logits[:, 0]], dim=1)

        def rows(self, examples, tag_names, predict):
            keep = [row for row in range(len(examples)) if int(examples.labels[row]) == 1]
            return examples.select(keep), False
''')


def test_a_task_in_one_new_file_runs_a_fit(tmp_path, monkeypatch):
    (tmp_path / "positives_margin_task.py").write_text(TASK_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("positives_margin_task")
    try:
        module, data, tokenizer = build_demo()
        monitor = SaliencyMonitor(tokenizer=tokenizer, task="positives_margin_one_file", num_examples=8)
        L.Trainer(max_epochs=2, callbacks=[monitor], logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, default_root_dir=str(tmp_path)).fit(module, datamodule=data)
    finally:
        sys.modules.pop("positives_margin_task", None)
    records = monitor.history
    assert [r["status"] for r in records] == ["ok"] * len(records) and len(records) >= 2
    for record in records:
        labels = [example["label"] for example in record["examples"]]
        assert labels and set(labels) == {1}  # the task's rows: positives alone
        assert record["settings"]["task"] == "positives_margin_one_file"
        # One class among the rows: the probe cannot tell a model at chance, so no suspect says so.
        assert record["metrics"]["scalars"]["saliency/probe/majority_rate"] == 1.0
        assert not any(s.get("at_chance") for block in record["metrics"]["shortcut"].values()
                       for s in block["suspects"])
