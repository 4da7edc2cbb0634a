"""The README's main job, run as written: the demo's last run shows what its heatmap caption says."""
import importlib.util
import json
from pathlib import Path

import pytest

from lightning_saliency.schema.records import completeness_error

pytestmark = pytest.mark.slow
DEMO = Path(__file__).resolve().parents[1] / "examples" / "shortcut_demo.py"


def test_the_demo_converges_and_its_heatmaps_show_the_planted_word(tmp_path):
    spec = importlib.util.spec_from_file_location("shortcut_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    log_dir = demo.main(["--root", str(tmp_path)])
    last = json.loads((Path(log_dir) / "saliency" / "epoch_004.json").read_text())
    # Adaptive IG meets the demo's tolerance on every example of the saturated model's last run.
    errors = [completeness_error(e["attributions"]["integrated_gradients"], e["delta"]["integrated_gradients"])
              for e in last["examples"]]
    assert all(error is not None and error <= 0.05 for error in errors), errors
    # The planted word is the top IG token of the positive reviews that carry it.
    carriers = [e for e in last["examples"] if "zorbly" in e["tokens"] and e["label_name"] == "positive"]
    top = []
    for e in carriers:
        scores = e["attributions"]["integrated_gradients"]
        best = max((i for i in range(len(scores)) if not e["special"][i]), key=lambda i: abs(scores[i]))
        top.append(e["tokens"][best] == "zorbly")
    assert len(carriers) >= 3 and sum(top) >= 0.8 * len(carriers), top
    assert any(c["confirmed"] for c in last["metrics"]["causal"])
