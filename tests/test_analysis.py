"""The pure parts of a run, on hand-made records: analysis, typed records, settings, discovery."""
import importlib.util
import json
import math
from dataclasses import replace

import pytest
import torch

from lightning_saliency.attribution import AttributionConfig
from lightning_saliency.monitor.analysis import AnalysisSettings, analyse
from lightning_saliency.monitor.metrics.faithfulness import faithfulness_summary
from lightning_saliency.monitor.metrics import ShortcutRules
from lightning_saliency.schema.files import read_record, write_record
from lightning_saliency.schema.records import ExampleRecord, RecordError, RunRecord
from tests.builders import synthetic_example, synthetic_run
from lightning_saliency.settings import EvidenceSettings, MonitorSettings, ProbeSettings, RunSchedule

run, example = synthetic_run, synthetic_example


def test_start_is_never_alarmed_and_a_dominant_rising_token_is():
    settings = AnalysisSettings(top_k=3)
    start = run("start", strength=2.0)
    start = replace(start, metrics=analyse(start, None, None, settings))
    assert start.metrics.shortcut["gradient"].suspects == []  # strong, but nothing to rise from
    later = run("000", strength=2.0)
    assert analyse(later, start, start, settings).shortcut["gradient"].suspects == []  # no rise since start
    start_flat = run("start", strength=0.1)
    metrics = analyse(later, start_flat, start_flat, settings)
    (suspect,) = metrics.shortcut["gradient"].suspects
    assert suspect.token == "zorbly" and suspect.top1_rate == 1.0 and suspect.label == 1
    assert suspect.mean_lift == pytest.approx(2.0 / 2.3 * 4)  # 4 regular tokens
    assert metrics.scalars["saliency/gradient/shortcut/suspects"] == 1.0
    assert metrics.shortcut["gradient"].reference == "start"
    assert metrics.drift["gradient"]["start"].positions == list(range(8))
    assert metrics.scalars["saliency/probe/accuracy"] == 1.0


def test_lift_bar_catches_a_token_whose_share_is_diluted_by_many_small_scores():
    # 0.25 of the mass (below min_share 0.3) but 4x a uniform token's share in a 16-token text.
    examples = []
    for i in range(16):
        word, label = ("zorbly", 1) if i < 8 else ("film", 0)  # zorbly only in positives: z = sqrt(8)
        tokens = ["[CLS]"] + ["w%d" % j for j in range(15)] + [word, "[SEP]"]
        scores = [0.0] + [1.0] * 15 + [5.0 if word == "zorbly" else 1.0, 0.0]
        examples.append(ExampleRecord(i, "", tokens, [None] * 18, [True] + [False] * 16 + [True], label, None, label,
                                      None, 0.9, label, 1.0, {"gradient": scores}))
    record = RunRecord("000", "fit", 0, 10, {}, ["gradient"], examples)
    (suspect,) = analyse(record, None, None, AnalysisSettings()).shortcut["gradient"].suspects
    assert suspect.mean_share == pytest.approx(0.25) and suspect.mean_lift == pytest.approx(4.0)
    strict = AnalysisSettings(rules=ShortcutRules(min_lift=5.0))
    assert analyse(record, None, None, strict).shortcut["gradient"].suspects == []


def test_drift_covers_only_the_examples_both_runs_attributed():
    start = run("start", 0.1, count=8)
    shortened = run("001", 0.1, count=3)  # a compute budget attributed a prefix
    block = analyse(shortened, None, start, AnalysisSettings()).drift["gradient"]["start"]
    assert block.positions == [0, 1, 2] and len(block.per_example) == 3
    assert block.summary["spearman"]["mean"] == pytest.approx(1.0, abs=1e-4)


def test_faithfulness_scalars_come_from_the_summaries():
    summary = faithfulness_summary((0.1, 0.5), [[0.2, 0.4], [0.0, 0.2]], [[0.1, 0.0], [0.3, 0.2]])
    assert summary.comprehensiveness == pytest.approx([0.1, 0.3]) and summary.comprehensiveness_aopc == pytest.approx(0.2)
    metrics = analyse(run("000", 0.1), None, None, AnalysisSettings(), {"gradient": summary})
    assert metrics.scalars["saliency/gradient/faithfulness/sufficiency_aopc"] == pytest.approx(0.15)


def test_records_round_trip_and_are_checked(tmp_path):
    record = run("000", 2.0)
    record = replace(record, metrics=analyse(record, run("start", 0.1), run("start", 0.1), AnalysisSettings()))
    record.metrics.scalars["nan_metric"] = math.nan
    path = write_record(record, tmp_path)
    data = json.loads(path.read_text())
    assert data["metrics"]["scalars"]["nan_metric"] is None  # never a JSON error, never NaN in the file
    again = read_record(path)
    assert again.to_json() == data
    assert again.metrics.shortcut["gradient"].suspects[0].token == "zorbly"
    path.write_text(json.dumps({**data, "schema": 99}))
    with pytest.raises(RecordError, match="schema 99"):
        read_record(path)
    path.write_text(data and json.dumps(data)[:200])
    with pytest.raises(RecordError, match="truncated"):
        read_record(path)


def test_settings_are_validated_in_one_place():
    with pytest.raises(ValueError, match="Unknown method"):
        MonitorSettings(methods=("lime",))
    with pytest.raises(ValueError, match="target"):
        MonitorSettings(target="largest")
    with pytest.raises(ValueError, match="budget"):
        MonitorSettings(budget=2.0)
    with pytest.raises(ValueError, match="task"):
        MonitorSettings(task="regression")
    with pytest.raises(ValueError, match="baseline"):
        AttributionConfig(n_steps=8, baseline="noise")
    with pytest.raises(ValueError, match="top1_rate"):
        ShortcutRules(top1_rate=1.5)
    with pytest.raises(ValueError, match="step_schedule"):
        RunSchedule(step_schedule="daily")
    with pytest.raises(ValueError, match="confirm_examples"):
        EvidenceSettings(confirm_examples=-1)
    with pytest.raises(ValueError, match="one label per text"):
        ProbeSettings(texts=("a", "b"), labels=(1,))
    with pytest.raises(ValueError, match="smoothgrad_samples.*read only by \\['smoothgrad'\\]"):
        MonitorSettings(methods=("gradient",), attribution=AttributionConfig(smoothgrad_samples=3))
    # Groups are passed down unchanged; None means "not given".
    groups = dict(attribution=AttributionConfig(n_steps=8, baseline="mask", max_tokens=256),
                  shortcut=ShortcutRules(ignore=["great"]), schedule=RunSchedule(every_n_train_steps=4))
    built = MonitorSettings.build(methods=["gradient", "integrated_gradients"], evidence=None, **groups)
    assert built.attribution is groups["attribution"] and built.shortcut.ignore == ("great",)
    assert built.evidence == EvidenceSettings() and built.methods == ("gradient", "integrated_gradients")


def test_the_callbacks_take_the_groups_and_refuse_flat_settings():
    """No release shipped the flat arguments of an earlier draft: a flat group field is an error
    that names the argument, not a silent no-op."""
    from lightning_saliency import SaliencyMonitor

    with pytest.raises(TypeError, match="n_steps"):
        SaliencyMonitor(tokenizer=None, n_steps=8)
    assert not importlib.util.find_spec("lightning_saliency.integrations")


def test_model_discovery_agrees_at_any_depth(model):
    from lightning_saliency.attribution import find_embedding_layer
    from lightning_saliency.monitor.model_access import hf_forward

    class Backbone(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

    class Holder(torch.nn.Module):  # a LightningModule-like wrapper holding self.backbone.model
        def __init__(self):
            super().__init__()
            self.backbone = Backbone()

    holder = Holder()
    assert find_embedding_layer(holder) is model.get_input_embeddings()
    ids = torch.tensor([[1, 7, 8, 2]])
    assert torch.equal(hf_forward(holder)(holder, {"input_ids": ids}).logits, model(input_ids=ids).logits)


def test_a_registered_method_is_usable_by_name(model, batch):
    from conftest import SPECIAL as special_tokens
    from lightning_saliency.attribution import AttributionMethod, MethodAttribution, attribute, register
    from lightning_saliency.attribution.methods import REGISTRY

    @register
    class TokenId(AttributionMethod):  # a toy method: the token id as its score
        name = "token_id"

        def compute(self, ctx, shared):
            return MethodAttribution(self.name, ctx.scatter([e["input_ids"].float() for e in ctx.evaluator.examples]))

    try:
        result = attribute(model, batch, ("gradient", "token_id"), special_tokens=special_tokens)
        assert list(result.methods) == ["gradient", "token_id"]
        mask = batch["attention_mask"].bool()
        assert torch.equal(result["token_id"].scores[mask], batch["input_ids"][mask].float())
    finally:
        REGISTRY.remove("token_id")


def test_no_alarm_without_label_association():
    later, start = run("000", 2.0), run("start", 0.1)
    for e in later.examples + start.examples:  # a one-class validation set: zorbly tops its examples, z = 0
        e.label = e.predicted = 1
    metrics = analyse(later, start, start, AnalysisSettings())
    assert metrics.shortcut["gradient"].suspects == []
    assert next(t for t in metrics.shortcut["gradient"].tokens if t.token == "zorbly").z == 0.0
    # Without true labels the association is measured against the predictions.
    later, start = run("000", 2.0), run("start", 0.1)
    for e in later.examples:
        e.label = None
    (suspect,) = analyse(later, start, start, AnalysisSettings()).shortcut["gradient"].suspects
    assert suspect.token == "zorbly" and suspect.z >= 2.0


def test_probe_labels_may_be_class_names():
    from lightning_saliency import ProbeSettings
    from lightning_saliency.monitor.sampling import label_indices

    assert ProbeSettings(texts=["a", "b"], labels=["positive", 0]).labels == ("positive", 0)
    assert label_indices(["positive", "negative", 1], ["negative", "positive"]) == [1, 0, 1]
    assert label_indices([1, 0], None) == [1, 0]
    with pytest.raises(ValueError, match="no names: set output=OutputSettings"):
        label_indices(["positive"], None)
    with pytest.raises(ValueError, match=r"\['great'\], which are not among the classes"):
        label_indices(["great"], ["negative", "positive"])
