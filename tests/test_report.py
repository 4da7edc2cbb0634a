"""The HTML report and the TensorBoard plugin, without a browser (structure, escaping, robustness)."""
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from werkzeug.test import Client

from lightning_saliency.report import build_report, read_run, read_runs
from lightning_saliency.report.html import token_color
from lightning_saliency.tensorboard_plugin import SaliencyPlugin

pytestmark = pytest.mark.slow  # the session fixture trains the demo once (~10 s)

PAYLOADS = ['<img src=x onerror=alert(1)>', '</script><script>alert(1)</script>', '" onmouseover="alert(1)', "<b>bold</b>"]


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside <script> elements."""

    def __init__(self, page):
        super().__init__()
        self.tags, self.scripts, self._in_script = [], [], False
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data

    def spans(self):
        return [a for t, a in self.tags if t == "span" and "tok" in a.get("class", "").split()]


def copy_run(run_dir, target, labels=("start", "000", "001")):
    (target / "saliency").mkdir(parents=True)
    for label in labels:
        shutil.copy(run_dir / "saliency" / f"epoch_{label}.json", target / "saliency")
    return target


def test_report_shows_every_token_of_every_example_method_and_run(saliency_run):
    root, run_dir = saliency_run
    run = read_run(run_dir, root)
    assert [r.label for r in run.records] == ["start", "000", "001"] and not run.problems
    page = build_report([run])
    parsed = Elements(page)
    expected = sum(len(e.tokens) * len(r.methods) for r in run.records for e in r.examples)
    spans = parsed.spans()
    assert len(spans) == expected
    views = [a for t, a in parsed.tags if "epoch-view" in a.get("class", "")]
    assert len(views) == 4 * 3
    # Colors: the largest positive score of an example is the darkest green, its most negative red
    # (an example whose IG has little to explain, its baseline predicting the same, is drawn white).
    from lightning_saliency.schema.records import NEUTRAL_SHARE, explained_share

    example = run.records[-1].examples[0]
    share = explained_share(example.attributions["integrated_gradients"], example.delta["integrated_gradients"],
                            example.probability)
    coloured = share is None or share >= NEUTRAL_SHARE
    scores = example.attributions["integrated_gradients"]
    regular = [s for s, sp in zip(scores, example.special) if not sp]
    # One scale per run and method: the largest |score| over all of the run's examples.
    limit = max(abs(s) for e in run.records[-1].examples
                for s, sp in zip(e.attributions["integrated_gradients"], e.special) if not sp)
    top = max(regular)
    colored = [a["style"] for a in spans if a["data-score"] == f"{top:+.4g}"]
    assert f"background:{token_color(top if coloured else 0.0, limit)}" in colored[-1]
    assert token_color(1, 1) == "#1e8449" and token_color(-1, 1) == "#c0392b"
    assert token_color(0, 1) in ("#f7f7f7", "#f6f7f6")  # the middle of a 256-entry colormap
    assert "<svg" in page and "Spearman vs start" in page  # drift charts
    assert 'max="2"' in page  # epoch slider over three runs
    assert len(parsed.scripts) == 1 and "http" not in parsed.scripts[0]  # no network, one inline script


def test_one_run_missing_methods_and_truncated_files_are_handled(saliency_run, tmp_path):
    root, run_dir = saliency_run
    single = copy_run(run_dir, tmp_path / "single", ("start",))
    page = build_report(read_runs(single))
    assert 'max="0"' in page and "Drift charts appear once there are two runs" in page

    partial = copy_run(run_dir, tmp_path / "partial")
    record = json.loads((partial / "saliency" / "epoch_000.json").read_text())
    record["methods"] = ["integrated_gradients"]
    for example in record["examples"]:
        del example["attributions"]["gradient"]
    record["examples"] = record["examples"][:2]  # as a compute budget would
    (partial / "saliency" / "epoch_000.json").write_text(json.dumps(record))
    text = (partial / "saliency" / "epoch_001.json").read_text()
    (partial / "saliency" / "epoch_002.json").write_text(text[: len(text) // 2])  # a crash mid-write
    (partial / "saliency" / "epoch_003.json").write_text("[1, 2]")
    run = read_runs(partial)[0]
    assert [r.label for r in run.records] == ["start", "000", "001"]
    assert any("epoch_002.json: truncated" in p for p in run.problems)
    assert any("epoch_003.json: not a saliency record" in p for p in run.problems)
    page = build_report([run])
    assert page.count("not computed in this run") == 2 and page.count("Not attributed in this run") == 2
    assert "epoch_002.json: truncated" in page


def test_tokens_and_texts_cannot_inject_markup_or_script(saliency_run, tmp_path):
    root, run_dir = saliency_run
    evil = copy_run(run_dir, tmp_path / "<b>run</b>", ("start", "000"))
    for path in (evil / "saliency").glob("*.json"):
        record = json.loads(path.read_text())
        for example in record["examples"]:
            example["tokens"][1: 1 + len(PAYLOADS)] = PAYLOADS
            example["text"] = PAYLOADS[1]
            example["label_name"] = example["predicted_name"] = PAYLOADS[0]
        record["label"] = PAYLOADS[2] if record["label"] == "000" else record["label"]
        record["metrics"]["shortcut"]["integrated_gradients"]["suspects"] = [{"token": PAYLOADS[1]}]
        path.write_text(json.dumps(record))
    page = build_report(read_runs(tmp_path))
    parsed = Elements(page)
    assert {t for t, _ in parsed.tags} <= {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3",
                                           "p", "span", "mark", "section", "table", "thead", "tbody", "tr", "th", "td",
                                           "div", "svg", "text", "line", "circle", "polyline", "rect", "label", "input",
                                           "datalist", "option", "output", "ul", "li", "b", "script"}
    assert "&lt;b&gt;run&lt;/b&gt;" in page and "<b>run</b>" not in page and "<b>bold</b>" not in page
    assert all(not name.startswith("on") for _, attrs in parsed.tags for name in attrs)
    assert len(parsed.scripts) == 1 and "alert" not in parsed.scripts[0]
    assert "<img" not in page and "</script><script>" not in page
    # The payloads survive as text: the attribute values parse back to the raw tokens.
    assert {a["data-token"] for a in parsed.spans()} >= set(PAYLOADS)


def test_cli_writes_the_report_and_reports_skipped_files(saliency_run, tmp_path):
    root, run_dir = saliency_run
    broken = copy_run(run_dir, tmp_path / "runs" / "a")
    (broken / "saliency" / "epoch_009.json").write_text('{"label": "009", "exa')
    out = tmp_path / "out" / "report.html"
    done = subprocess.run([sys.executable, "-m", "lightning_saliency", "report", str(tmp_path / "runs"), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "1 run(s), 3 record(s)" in done.stdout and "epoch_009.json: truncated" in done.stderr
    assert out.read_text().startswith("<!DOCTYPE html>")
    script = shutil.which("lightning-saliency")
    if script:  # the console script of the installed package
        assert subprocess.run([script, "report", str(tmp_path / "runs"), "-o", str(out)], timeout=120).returncode == 0
    missing = subprocess.run([sys.executable, "-m", "lightning_saliency", "report", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr


def test_tensorboard_plugin_serves_runs_and_reports(saliency_run, tmp_path):
    from importlib.metadata import entry_points

    from tensorboard.plugins.base_plugin import TBContext

    assert any(e.value.endswith(":SaliencyPlugin") for e in entry_points(group="tensorboard_plugins"))
    root, run_dir = saliency_run
    plugin = SaliencyPlugin(TBContext(logdir=str(root)))
    assert plugin.is_active() and plugin.frontend_metadata().tab_name == "Saliency"
    apps = plugin.get_plugin_apps()
    runs = json.loads(Client(apps["/runs"]).get("/runs").get_data())
    assert runs == ["demo/version_0"]
    page = Client(apps["/report"]).get("/report", query_string={"run": runs[0]})
    assert page.status_code == 200 and b'class="tok' in page.get_data()
    assert Client(apps["/report"]).get("/report", query_string={"run": "../../etc"}).status_code == 400
    assert b"export async function render" in Client(apps["/index.js"]).get("/index.js").get_data()
    assert not SaliencyPlugin(TBContext(logdir=str(tmp_path))).is_active()
