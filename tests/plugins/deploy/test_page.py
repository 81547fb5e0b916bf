"""The web chat page of ``lmforge serve`` in a real headless Chromium (Debian's chromium
and chromium-driver, through Selenium): type a message, watch the reply stream in."""

from __future__ import annotations

import shutil
import time

import pytest
from test_serve import KEY, make_run, server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="the browser test needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver (.ci/run does)",
)


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,800", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for(condition, timeout: float = 30.0, what: str = "the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_a_message_typed_in_the_page_gets_a_streamed_reply(tmp_path, browser):
    from selenium.webdriver.common.by import By

    run = make_run(tmp_path)
    with server(run, "--api-key", KEY) as url:
        browser.get(url + "/")
        browser.find_element(By.ID, "key").send_keys(KEY)
        browser.execute_script("document.getElementById('key').dispatchEvent(new Event('change'))")
        wait_for(lambda: browser.find_element(By.ID, "model").text == "run", what="the model's name")
        wait_for(lambda: "24.8" in browser.find_element(By.ID, "run").text, what="the run's summary figures")
        max_tokens = browser.find_element(By.ID, "max_tokens")
        max_tokens.clear()
        max_tokens.send_keys("300")
        browser.find_element(By.ID, "temperature").clear()
        browser.find_element(By.ID, "temperature").send_keys("0")
        box = browser.find_element(By.ID, "input")
        box.send_keys("<b>hello</b> & bye")
        browser.find_element(By.ID, "send").click()

        reply = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".msg.assistant"), what="the reply bubble")[0]
        lengths = []  # the reply's length as it grows: streamed, not all at once
        deadline = time.monotonic() + 60
        while reply.get_attribute("data-done") != "true" and time.monotonic() < deadline:
            lengths.append(len(reply.text))
            time.sleep(0.01)
        assert reply.get_attribute("data-done") == "true", "the reply did not finish within 60 s"
        assert len(reply.text) > 0
        partial = {n for n in lengths if 0 < n < len(reply.text)}
        assert partial, f"the reply appeared all at once (lengths seen while streaming: {sorted(set(lengths))[:10]})"
        user = browser.find_element(By.CSS_SELECTOR, ".msg.user")
        assert user.text == "<b>hello</b> & bye"  # escaped, shown as typed
        assert not browser.find_elements(By.CSS_SELECTOR, ".msg.user b")
        shot = tmp_path / "serve.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000


def test_the_explain_view_shows_attention_and_saliency(tmp_path, browser):
    """The page's Explain button: the text's tokens coloured by saliency and the attention map,
    from POST /lmforge/explain, which takes the same key as every data route."""
    import httpx
    from selenium.webdriver.common.by import By

    run = make_run(tmp_path)
    with server(run, "--api-key", KEY) as url:
        body = {"model": "run", "prompt": "def add(a, b):"}
        assert httpx.post(url + "/lmforge/explain", json=body, timeout=60).status_code == 401
        auth = {"Authorization": f"Bearer {KEY}"}
        bad = httpx.post(url + "/lmforge/explain", json=body | {"target": "return a + b"}, headers=auth, timeout=60)
        assert bad.status_code == 400 and "tokens of the run's tokenizer" in bad.json()["error"]["message"]
        data = httpx.post(url + "/lmforge/explain", json=body, headers=auth, timeout=60).json()
        assert len(data["saliency"]["grad_x_input"]) == len(data["tokens"]) == len(data["attention"]["rollout"])
        assert all(abs(sum(row) - 1) < 1e-4 for row in data["attention"]["last_layer"])

        browser.get(url + "/")
        browser.find_element(By.ID, "key").send_keys(KEY)
        browser.execute_script("document.getElementById('key').dispatchEvent(new Event('change'))")
        wait_for(lambda: browser.find_element(By.ID, "model").text == "run", what="the model's name")
        browser.find_element(By.ID, "input").send_keys("def add(a, b):")
        browser.find_element(By.ID, "explain").click()
        view = wait_for(lambda: [e for e in browser.find_elements(By.CSS_SELECTOR, ".msg.explain") if e.get_attribute("data-done") == "true"], what="the explain view")[0]
        tokens = view.find_elements(By.CSS_SELECTOR, ".tok")
        assert "".join(t.text for t in tokens).replace(" ", "") == "".join(data["tokens"]).replace(" ", "")
        assert any("rgba" in t.get_attribute("style") for t in tokens) and "draws on" in tokens[-1].get_attribute("title")
        canvas = view.find_element(By.TAG_NAME, "canvas")
        assert canvas.size["width"] > 100
        shot = tmp_path / "explain.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
