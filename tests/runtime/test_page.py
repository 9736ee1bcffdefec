"""`bert14 serve --ui`: the page at / in a real headless browser (Debian's chromium and chromedriver,
which .ci/run installs when they are missing), against a real `bert14 serve` process."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port, serving

pytest.importorskip("fastapi")
selenium = pytest.importorskip("selenium", reason="the dev requirements hold selenium: make venv")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ready  # noqa: E402
from selenium.webdriver.support.select import Select  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ARTICLE = "记者从市交通委获悉，" + "地铁新线将于年底开通运营，沿线居民出行将更加便利。" * 60  # about 1,510 tokens
KEY = "page-test-key-0123456789abcdef"


def _chromedriver() -> str:
    found = shutil.which("chromedriver")
    if found is None:  # CI installs it (.ci/run): a skip here would hide the page's test
        pytest.fail("chromedriver is not on PATH: install Debian's chromium and chromium-driver (see .ci/run)")
    return found


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):  # fmt: skip
        options.add_argument(arg)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        options.binary_location = chromium
    driver = webdriver.Chrome(service=Service(_chromedriver()), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tiny_artifact: Path):
    port = free_port()
    process = serving(str(tiny_artifact), "--port", str(port), "--ui", "--threads", "1", "--provider", "cpu")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def keyed_server(tiny_artifact: Path):
    port = free_port()
    process = serving(str(tiny_artifact), "--port", str(port), "--ui", "--api-key", KEY, "--threads", "1")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


def _api(base: str, texts: list[str], long_text: object, key: str | None = None) -> list[dict]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    body = json.dumps({"texts": texts, "long_text": long_text}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{base}/v1/classify", body, headers), timeout=60) as reply:
        return json.loads(reply.read())["predictions"]


def _classify(driver, text: str, strategy: str, **fields: str) -> None:  # noqa: ANN001
    box = driver.find_element(By.ID, "text")
    driver.execute_script("arguments[0].value = arguments[1];", box, text)  # paste, as a user would
    Select(driver.find_element(By.ID, "strategy")).select_by_value(strategy)
    for name, value in fields.items():
        field = driver.find_element(By.ID, name)
        field.clear()
        field.send_keys(value)
    driver.find_element(By.ID, "classify").click()


def _wait(driver, element_id: str) -> None:  # noqa: ANN001
    WebDriverWait(driver, 60).until(ready.visibility_of_element_located((By.ID, element_id)))


def test_the_page_shows_every_labels_score_and_each_windows_label(browser, server: str) -> None:
    browser.get(server + "/")
    WebDriverWait(browser, 60).until(lambda d: "labels" in d.find_element(By.ID, "model").text)
    _classify(browser, ARTICLE, "windows", stride="300")
    _wait(browser, "windows")
    want = _api(server, [ARTICLE], {"strategy": "windows", "stride": 300})[0]
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    shown = {bar.get_attribute("data-label"): float(bar.get_attribute("data-score")) for bar in bars}
    assert shown == want["probs"] and len(bars) == 14
    assert bars[0].get_attribute("data-label") == want["label"], "the top label first"
    assert f"{want['tokens']} tokens in 5 windows" in browser.find_element(By.ID, "summary").text
    boxes = browser.find_elements(By.CSS_SELECTOR, "#strip .window")
    assert [b.text for b in boxes] == [w["label"] for w in want["window_labels"]] and len(boxes) == 5
    items = browser.find_elements(By.CSS_SELECTOR, "#window-list li")
    assert items[-1].text.startswith(f"characters {want['window_labels'][-1]['start']}-{len(ARTICLE)}:")
    # A title: one row, no window strip.
    _classify(browser, "湖人主场险胜勇士 詹姆斯砍下三双", "truncate")
    WebDriverWait(browser, 60).until(lambda d: "windows" not in d.find_element(By.ID, "summary").text)
    assert not browser.find_element(By.ID, "windows").is_displayed()


def test_a_bad_input_shows_the_servers_message(browser, server: str) -> None:
    browser.get(server + "/")
    WebDriverWait(browser, 60).until(lambda d: "labels" in d.find_element(By.ID, "model").text)
    _classify(browser, ARTICLE, "windows", max_windows="0")
    _wait(browser, "error")
    message = browser.find_element(By.ID, "error").text
    assert message.startswith("422: long_text max_windows: expected a whole number from 1 to 4096, got 0")
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_with_an_api_key_the_page_asks_for_it_and_sends_it(browser, keyed_server: str) -> None:
    browser.get(keyed_server + "/")
    _wait(browser, "key-row")
    _classify(browser, ARTICLE, "head_tail", head_tokens="64")
    _wait(browser, "error")
    assert browser.find_element(By.ID, "error").text.startswith("401: expected Authorization: Bearer")
    browser.find_element(By.ID, "key").send_keys(KEY)
    _classify(browser, ARTICLE, "head_tail", head_tokens="64")
    _wait(browser, "result")
    want = _api(keyed_server, [ARTICLE], {"strategy": "head_tail", "head_tokens": 64}, KEY)[0]
    top = browser.find_element(By.CSS_SELECTOR, "#bars .bar.top")
    assert top.get_attribute("data-label") == want["label"]
    assert float(top.get_attribute("data-score")) == want["score"]
    assert "truncated" in browser.find_element(By.ID, "summary").text
