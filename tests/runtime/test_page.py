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


def test_the_users_settings_survive_the_first_description_read_after_the_key(browser, keyed_server: str) -> None:
    # With a key the page cannot read /v1/model until the key is typed; it reads it at the first
    # Classify, and that read used to reset the form to the server's defaults (truncate).
    browser.get(keyed_server + "/")
    _wait(browser, "key-row")
    browser.find_element(By.ID, "key").send_keys(KEY)
    _classify(browser, ARTICLE, "windows", stride="200")
    _wait(browser, "windows")
    want = _api(keyed_server, [ARTICLE], {"strategy": "windows", "stride": 200}, KEY)[0]
    assert want["windows"] > 5, "stride 200 takes more windows than the default 256"
    assert f"in {want['windows']} windows" in browser.find_element(By.ID, "summary").text
    assert Select(browser.find_element(By.ID, "strategy")).first_selected_option.get_attribute("value") == "windows"
    assert browser.find_element(By.ID, "stride").get_attribute("value") == "200"


def test_windows_are_placed_by_code_points_as_the_server_counts_them(browser, server: str) -> None:
    text = "".join("😀新闻🏀体育" if i % 2 else "湖人主场险胜勇士🎉" for i in range(160))  # astral characters
    browser.get(server + "/")
    WebDriverWait(browser, 60).until(lambda d: "labels" in d.find_element(By.ID, "model").text)
    _classify(browser, text, "windows", stride="200")
    _wait(browser, "windows")
    want = _api(server, [text], {"strategy": "windows", "stride": 200})[0]["window_labels"]
    assert want[-1]["end"] == len(text), "the server's spans count code points"
    items = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#window-list li")]
    assert len(items) == len(want) > 1
    for item, window in zip(items, want, strict=True):
        start, end = window["start"], window["end"]
        assert item.startswith(f"characters {start}-{end}:")
        assert item.endswith(f'"{text[start : min(end, start + 24)]}..."'), item
    last = browser.find_elements(By.CSS_SELECTOR, "#strip .window")[-1]
    right = browser.execute_script(
        "const s = arguments[0].getBoundingClientRect(), p = arguments[0].parentElement.getBoundingClientRect();"
        "return (s.right - p.left) / p.width;",
        last,
    )
    assert abs(right - 1.0) < 0.01, f"the last window ends at {right:.3f} of the strip, not at the text's end"


def test_the_page_runs_under_a_policy_that_allows_no_inline_script_or_style(server: str) -> None:
    with urllib.request.urlopen(server + "/", timeout=30) as reply:
        policy, html = reply.headers["Content-Security-Policy"], reply.read().decode()
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in html and "<style>" not in html and " style=" not in html
    for asset, kind in (("/page.js", "text/javascript"), ("/page.css", "text/css")):
        with urllib.request.urlopen(server + asset, timeout=30) as reply:
            assert reply.headers["Content-Type"].startswith(kind) and reply.headers["X-Content-Type-Options"]
