"""The report and the TensorBoard tab in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium; no browser is downloaded). Skipped with the reason when
either is missing; the structure tests in test_report.py run regardless.

Set SALIENCY_SCREENSHOTS=DIR to keep the screenshots (the README's come from here).
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lightning_saliency.report import write_report
from lightning_saliency.report.html import token_color

pytestmark = pytest.mark.slow

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401
except ImportError:  # pragma: no cover - dev extra missing
    selenium = None

if selenium is None or BROWSER is None or DRIVER is None:
    pytest.skip(
        "browser tests need selenium (pip install -e '.[dev]') and Debian's chromium + chromium-driver "
        f"(apt-get install chromium chromium-driver); found selenium={selenium is not None}, browser={BROWSER}, "
        f"chromedriver={DRIVER}",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    profile = tmp_path_factory.mktemp("chromium-profile")
    # No sandbox (CI runs as root); no background networking: this machine has no internet.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", f"--user-data-dir={profile}", "--window-size=1280,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def screenshot(driver, tmp_path, name):
    folder = Path(os.environ.get("SALIENCY_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(folder / name))


def rgb(hex_color):
    return tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))


def background(driver, element):
    value = driver.execute_script("return getComputedStyle(arguments[0]).backgroundColor", element)
    return tuple(int(v) for v in value[value.index("(") + 1: value.index(")")].split(",")[:3])


def visible_epochs(driver):
    return {v.get_attribute("data-epoch") for v in driver.find_elements(By.CSS_SELECTOR, ".epoch-view") if v.is_displayed()}


def test_report_colors_hover_and_epoch_slider(browser, saliency_run, tmp_path):
    root, _ = saliency_run
    path, runs = write_report(root, tmp_path / "report.html")
    browser.get(Path(path).as_uri())
    WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.CSS_SELECTOR, "body.scripted")))
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]  # CSP let our script run, no errors

    # Only the last run is shown at first; every token is drawn with its background color.
    assert visible_epochs(browser) == {"2"}
    tokens = [t for t in browser.find_elements(By.CSS_SELECTOR, ".epoch-view.current .tok") if t.is_displayed()]
    assert len(tokens) == sum(len(e.tokens) * 2 for e in runs[0].records[-1].examples)
    record = runs[0].records[-1]
    example = record.examples[0]
    # The gradient line: after 2 epochs on 128 reviews the model says p 0.52 to everything, the
    # baseline too, so the IG lines are flagged "the baseline is not neutral" and drawn white.
    method = "gradient"
    assert "the baseline is not neutral here" in browser.find_elements(By.CSS_SELECTOR, ".example")[0].find_elements(
        By.CSS_SELECTOR, ".epoch-view.current .method")[0].text
    scores = example.attributions[method]
    regular = [(s, i) for i, (s, sp) in enumerate(zip(scores, example.special)) if not sp]
    best, position = max(regular)
    worst, worst_position = min(regular)
    first_line = browser.find_elements(By.CSS_SELECTOR, ".example")[0].find_elements(
        By.CSS_SELECTOR, ".epoch-view.current .method")[1].find_elements(By.CSS_SELECTOR, ".tok")
    strongest = first_line[position]
    red, green, blue = background(browser, strongest)
    assert green > red and green > blue  # positive evidence is green
    if worst < 0:
        red, green, blue = background(browser, first_line[worst_position])
        assert red > green  # negative evidence is red
    limit = max(abs(s) for e in record.examples  # one scale per run and method
                for s, sp in zip(e.attributions[method], e.special) if not sp)
    assert background(browser, strongest) == rgb(token_color(best, limit))

    # Hovering a token shows its score.
    ActionChains(browser).move_to_element(strongest).perform()
    inspector = browser.find_element(By.ID, "inspector")
    WebDriverWait(browser, 5).until(lambda d: inspector.is_displayed())
    assert inspector.text.split()[-1] == f"{best:+.4g}" and example.tokens[position] in inspector.text
    screenshot(browser, tmp_path, "report.png")

    # The slider switches the view to an earlier run; the side-by-side box shows all runs.
    slider = browser.find_element(By.CSS_SELECTOR, ".epoch-slider")
    slider.send_keys(Keys.HOME)
    assert visible_epochs(browser) == {"0"}
    assert browser.find_element(By.CSS_SELECTOR, ".epoch-label").text == "start"
    slider.send_keys(Keys.ARROW_RIGHT)
    assert visible_epochs(browser) == {"1"} and browser.find_element(By.CSS_SELECTOR, ".epoch-label").text == "000"
    browser.find_element(By.CSS_SELECTOR, ".side-by-side").click()
    assert visible_epochs(browser) == {"0", "1", "2"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_saliency_tab(browser, saliency_run, tmp_path):
    root, _ = saliency_run
    port = free_port()
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(root), "--host", "127.0.0.1",
               "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugins_listing", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.time() < deadline, "TensorBoard did not start within 90 s"
                time.sleep(0.5)
        browser.get(f"http://127.0.0.1:{port}/#saliency")
        wait = WebDriverWait(browser, 60)
        tab = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "iframe[src*='name=saliency']")))
        browser.switch_to.frame(tab)
        chooser = wait.until(EC.presence_of_element_located((By.ID, "saliency-run")))
        assert chooser.get_attribute("value") == "demo/version_0"
        browser.switch_to.frame(wait.until(EC.presence_of_element_located((By.ID, "saliency-report"))))
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "body.scripted")))
        shown = [t for t in browser.find_elements(By.CSS_SELECTOR, ".tok") if t.is_displayed()]
        assert len(shown) > 20
        assert len({background(browser, t) for t in shown}) > 5  # colored by score, not one flat color
        browser.switch_to.default_content()
        screenshot(browser, tmp_path, "tensorboard_tab.png")
    finally:
        browser.switch_to.default_content()
        server.terminate()
        server.wait(timeout=30)


def test_report_word_toggle_merges_subwords(browser, saliency_run, tmp_path):
    import json

    _, run_dir = saliency_run
    (tmp_path / "split" / "saliency").mkdir(parents=True)
    for path in (run_dir / "saliency").glob("epoch_*.json"):
        record = json.loads(path.read_text())
        for example in record["examples"]:  # the first two words become "z ##or" pieces of one word
            example["tokens"][1:3] = ["z", "##or"]
            example["word_ids"][2] = example["word_ids"][1]
        (tmp_path / "split" / "saliency" / path.name).write_text(json.dumps(record))
    path, runs = write_report(tmp_path / "split", tmp_path / "report.html")
    browser.get(Path(path).as_uri())
    WebDriverWait(browser, 20).until(EC.presence_of_element_located((By.CSS_SELECTOR, "body.scripted")))

    def shown(kind):
        return [t.get_attribute("data-token") for t in browser.find_elements(
            By.CSS_SELECTOR, f".example .epoch-view.current .tokens.{kind} .tok") if t.is_displayed()]

    assert "z" in shown("pieces") and shown("words") == []  # subwords first
    browser.find_element(By.CSS_SELECTOR, ".show-words").click()
    words = shown("words")
    assert "zor" in words and "z" not in words and shown("pieces") == []
    example = runs[0].records[-1].examples[0]
    merged = browser.find_elements(By.CSS_SELECTOR, ".example .epoch-view.current .tokens.words .tok")[1]
    scores = example.attributions["integrated_gradients"]
    assert merged.get_attribute("data-token") == "zor"
    assert float(merged.get_attribute("data-score")) == pytest.approx(scores[1] + scores[2], rel=1e-3, abs=1e-6)
