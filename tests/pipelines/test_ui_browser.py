"""`dermpipe ui` in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by Selenium,
against a real `dermpipe ui` subprocess on loopback, on the session's kfp.local demo runs."""

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path(os.environ.get("DERMPIPE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("DERMPIPE_CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver"))
WINDOW = (1280, 900)

pytestmark = pytest.mark.slow  # shares the session's two kfp.local runs with test_local_run.py


def _browser_missing() -> str:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    return ", ".join(missing)


@pytest.fixture(scope="module")
def browser():
    missing = _browser_missing()
    if missing:
        reason = (f"no headless browser: missing {missing}; install it with "
                  "`apt-get install -y chromium chromium-driver` (.ci/run does)")
        if os.environ.get("DERMPIPE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(first_run, cached_run, home, tmp_path_factory):
    """`dermpipe ui` as a real server process on a free loopback port, reading the session's runs."""
    port = _free_port()
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    env = {**os.environ, "DERMPIPE_HOME": str(home)}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dermpipe.cli.main", "ui", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.read() == b"ok":
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"`dermpipe ui` did not come up on {url}: {log.read_text()[-2000:]}")
            time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def _click_and_wait(browser, element, url_part: str, timeout: float = 60):
    """Click a link or submit button, then wait until the browser has navigated to a URL containing `url_part`.
    Selenium's click returns before the next page loads; finding elements straight after it races the load
    (seen in CI on a busy machine)."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    element.click()
    WebDriverWait(browser, timeout).until(expected_conditions.url_contains(url_part))
    WebDriverWait(browser, timeout).until(lambda b: b.execute_script("return document.readyState") == "complete")


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def _has_colour(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 12, at_least: int = 50) -> bool:
    return int((np.abs(pixels - np.array(rgb)).max(axis=2) <= tolerance).sum()) >= at_least


def test_runs_page_in_chromium(browser, server, first_run, cached_run, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    table = browser.find_element(By.ID, "runs")
    assert first_run.run_id in table.text and cached_run.run_id in table.text
    assert f"{first_run.headline()['balanced_accuracy']:.4f}" in table.text
    shot = browser.get_screenshot_as_png()
    (tmp_path / "runs.png").write_bytes(shot)
    pixels = _png(shot)
    viewport = browser.execute_script("return [window.innerWidth, window.innerHeight, window.devicePixelRatio]")
    assert pixels.shape[:2] == (round(viewport[1] * viewport[2]), round(viewport[0] * viewport[2]))
    assert pixels.shape[1] == WINDOW[0]
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # not blank
    assert _has_colour(pixels[:30], (31, 58, 95), at_least=1000)  # the header bar is drawn


def test_run_page_dag_in_chromium(browser, server, first_run, cached_run):
    from selenium.webdriver.common.by import By

    browser.get(server + "/")
    _click_and_wait(browser, browser.find_element(By.LINK_TEXT, first_run.run_id), f"/runs/{first_run.run_id}")
    assert browser.current_url.endswith(f"/runs/{first_run.run_id}")
    nodes = browser.find_elements(By.CSS_SELECTOR, "svg.dag g.node")
    assert len(nodes) == len(first_run.tasks) and all("ok" in n.get_attribute("class").split() for n in nodes)
    names = {n.find_element(By.CSS_SELECTOR, "text.name").text for n in nodes}
    assert names == set(first_run.tasks)
    dag = browser.find_element(By.CSS_SELECTOR, "svg.dag")
    pixels = _png(dag.screenshot_as_png)
    assert abs(pixels.shape[1] - dag.size["width"]) <= 2 and abs(pixels.shape[0] - dag.size["height"]) <= 2
    assert _has_colour(pixels, (23, 116, 58))  # green borders of succeeded tasks
    assert not _has_colour(pixels, (44, 95, 158))  # no cache-hit blue on a first run

    browser.get(f"{server}/runs/{cached_run.run_id}")
    nodes = browser.find_elements(By.CSS_SELECTOR, "svg.dag g.node")
    classes = {n.find_element(By.CSS_SELECTOR, "text.name").text: n.get_attribute("class").split() for n in nodes}
    # every stage is a cache hit; resolve-champion and deploy never are, and the gate re-ran because the champion
    # changed (none -> version 1)
    rerun = {"resolve-champion", "gate", "deploy"}
    assert len(nodes) == len(first_run.tasks) and set(classes) == set(first_run.tasks)
    assert all(("cached" in c) == (name not in rerun) for name, c in classes.items()), classes
    pixels = _png(browser.find_element(By.CSS_SELECTOR, "svg.dag").screenshot_as_png)
    assert _has_colour(pixels, (44, 95, 158))  # blue borders of cache hits


def test_evaluation_report_renders_inside_its_sandboxed_frame(browser, server, first_run):
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/runs/{first_run.run_id}")
    _click_and_wait(browser, browser.find_element(By.LINK_TEXT, "Evaluation report"), "/artifacts/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Evaluation report"
    browser.switch_to.frame(browser.find_element(By.ID, "report"))
    try:
        assert "Confusion matrix" in browser.find_element(By.TAG_NAME, "body").text
        drawn = browser.execute_script(
            "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length")
        assert drawn >= 3  # confusion matrix, ROC and reliability plots
    finally:
        browser.switch_to.default_content()


def test_lineage_and_compare_in_chromium(browser, server, first_run, cached_run):
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/lineage")
    _click_and_wait(browser, browser.find_element(By.LINK_TEXT, "model:dermpipe-isic2019/1"), "ref=model")
    labels = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "svg.dag text.name")]
    assert {"ingest", "merge", "split", "train", "evaluate", "deploy", "pushed"} <= set(labels)
    assert "produced by: task deploy" in browser.find_element(By.ID, "tree").text

    browser.get(server + "/")  # other tests may have added runs: pick the two by id
    browser.find_element(By.CSS_SELECTOR, f"input[name='a'][value='{first_run.run_id}']").click()
    browser.find_element(By.CSS_SELECTOR, f"input[name='b'][value='{cached_run.run_id}']").click()
    _click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "form[action='/compare'] button"), "/compare")
    table = browser.find_element(By.ID, "compare")
    assert first_run.run_id in table.text and cached_run.run_id in table.text
    assert "+0.0000" in table.text
