"""The web console and the offline API docs in a real browser: Debian's headless Chromium driven
by Selenium against a live uvicorn server on 127.0.0.1 (the small real models), with Chromium
kept off every other host. `make test` installs chromium and chromium-driver when missing.

LSR_CONSOLE_SCREENSHOTS=docs makes the tests also save the README's screenshots there
(console-search.png, console-collections.png).
"""
import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from service.app import create_app
from service.settings import Settings

from .conftest import CORPUS, load_corpus

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
KEY, READ_KEY = "console-admin-key", "console-read-key"
KEY_STORAGE = "lsr-console-api-key"  # app.js
WAIT = 30  # seconds: the bound of every wait (a search's first call loads the models)
CHUNK = 4  # documents per job step
SCREENSHOTS = os.environ.get("LSR_CONSOLE_SCREENSHOTS")
BM25_ONLY = {"sparse_encoder": None, "dense_encoder": None, "multivector_encoder": None}


class Server:
    """A real uvicorn server in a thread, on a socket bound here (no race for the port)."""

    def __init__(self, data_dir: Path, **settings):
        self.app = create_app(Settings(data_dir=data_dir, _env_file=None, job_chunk_docs=CHUNK, **settings))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """API keys configured; collection 'demo' (every list: sparse, bm25, dense, multivector)."""
    with Server(tmp_path_factory.mktemp("data"), api_keys=KEY, read_keys=READ_KEY) as s:
        with httpx.Client(base_url=s.url, headers={"X-API-Key": KEY}, timeout=120) as c:
            assert c.post("/collections", json={"name": "demo"}).status_code == 201
            r = c.put("/collections/demo/documents", json={"documents": load_corpus(per_topic=2, topics=8)})
            assert r.status_code == 200, r.text
        yield s


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("chromium and chromium-driver are not installed (make test installs them: "
                    "apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1366,1000", "--lang=en-US", "--no-first-run", "--disable-sync",
                "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--metrics-recording-only", "--no-default-browser-check",
                # offline: no name but 127.0.0.1 resolves, and any other host goes to a dead proxy
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=opts, service=Service(executable_path=str(CHROMEDRIVER)))
    except WebDriverException as exc:
        pytest.fail(f"chromium is installed but does not start: {exc.msg}")
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def requested_urls(driver) -> list[str]:
    """Every URL the browser requested since the last call (the performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


@pytest.fixture(autouse=True)
def stays_offline(browser):
    """After each test: the browser asked nothing of any host but 127.0.0.1, and logged no
    script error."""
    requested_urls(browser)
    browser.get_log("browser")
    yield
    outside = [u for u in requested_urls(browser)
               if not u.startswith(("http://127.0.0.1:", "data:", "blob:", "about:"))]
    assert outside == [], f"the pages reached outside 127.0.0.1: {outside}"
    errors = [e["message"] for e in browser.get_log("browser")
              if e["level"] == "SEVERE" and "401" not in e["message"] and "403" not in e["message"]]
    assert errors == [], errors


class wait:
    """WebDriverWait whose timeout says what the page showed (its message, the browser log)."""

    def __init__(self, driver, timeout: float = WAIT):
        self.driver, self.timeout = driver, timeout

    def until(self, condition):
        try:
            return WebDriverWait(self.driver, self.timeout, poll_frequency=0.05).until(condition)
        except TimeoutException:
            try:
                shown = message(self.driver)
            except WebDriverException:
                shown = "?"
            log = [e["message"] for e in self.driver.get_log("browser")]
            raise AssertionError(f"not within {self.timeout} s at {self.driver.current_url}; the page's "
                                 f"message: {shown!r}; the browser's log: {log}") from None


def open_console(driver, url: str, page: str = "search", key: str | None = KEY) -> None:
    """The console with ``key`` already entered in this browser session."""
    driver.get("about:blank")  # a new document, not a same-page hash change
    driver.get(f"{url}/#{page}")
    driver.execute_script("sessionStorage.clear();" + (
        f"sessionStorage.setItem({KEY_STORAGE!r}, {key!r});" if key else ""))
    driver.refresh()
    if key:
        wait(driver).until(lambda d: "demo" in [o.get_attribute("value")
                                                 for o in d.find_elements(By.CSS_SELECTOR, "#collection option")])


def message(driver) -> str:
    box = driver.find_element(By.ID, "message")
    return box.text if box.is_displayed() else ""


def search(driver, query: str, mode: str = "hybrid", k: int = 5):
    """Submit the search form; the results of this search (not the previous one's)."""
    Select(driver.find_element(By.ID, "mode")).select_by_value(mode)
    box = driver.find_element(By.ID, "query")
    box.clear()
    box.send_keys(query)
    k_box = driver.find_element(By.ID, "k")
    k_box.clear()
    k_box.send_keys(str(k))
    old = driver.find_elements(By.CSS_SELECTOR, "#results > li")
    driver.find_element(By.ID, "search-button").click()
    if old:
        wait(driver).until(EC.staleness_of(old[0]))
    wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results > li.result") or message(d))
    assert message(driver) == ""
    return driver.find_elements(By.CSS_SELECTOR, "#results > li.result")


def test_keys_wrong_key_is_refused_clearly_and_the_right_one_works(browser, server):
    open_console(browser, server.url, key=None)
    wait(browser).until(lambda d: "needs an API key" in message(d))
    assert browser.find_element(By.ID, "key-state").text == "a key is needed"

    key_box = browser.find_element(By.ID, "api-key")
    key_box.send_keys("not-the-key", Keys.ENTER)  # keyboard only
    wait(browser).until(lambda d: "API key was not accepted" in message(d))
    assert "unknown API key" in message(browser)

    key_box.send_keys(KEY, Keys.ENTER)
    wait(browser).until(lambda d: "demo" in d.find_element(By.ID, "collection").text)
    assert message(browser) == ""
    assert "key accepted" in browser.find_element(By.ID, "key-state").text
    assert browser.execute_script(f"return sessionStorage.getItem({KEY_STORAGE!r})") == KEY
    browser.refresh()  # kept for the browser session
    wait(browser).until(lambda d: "demo" in d.find_element(By.ID, "collection").text)
    assert message(browser) == ""

    # a read-only key searches, but a write says why it is refused
    browser.find_element(By.ID, "api-key").send_keys(READ_KEY, Keys.ENTER)
    wait(browser).until(lambda d: "key accepted" in d.find_element(By.ID, "key-state").text)
    assert search(browser, "wind turbines", "bm25")
    browser.find_element(By.ID, "nav-collections").click()
    browser.find_element(By.ID, "new-name").send_keys("other", Keys.ENTER)
    wait(browser).until(lambda d: "Not allowed with this key (403)" in message(d))
    assert "read-only" in message(browser)


def test_search_in_every_mode(browser, server):
    open_console(browser, server.url)
    for mode in ("hybrid", "sparse", "bm25", "dense"):
        results = search(browser, "baking bread with a sourdough starter", mode)
        assert results, mode
        assert results[0].get_attribute("data-id") == "cooking-01", mode
        assert "bread" in results[0].find_element(By.CSS_SELECTOR, ".text").text.lower()
        timing = browser.find_element(By.ID, "server-time").text
        assert re.fullmatch(r"server \d+\.\d ms \(.*retrieve \d+\.\d.*\)", timing), timing
        marks = {m.text.lower() for m in results[0].find_elements(By.CSS_SELECTOR, "mark.q")}
        assert "bread" in marks, (mode, marks)
        if mode in ("hybrid", "sparse"):  # the explanation names SPLADE's expansion terms
            assert results[0].find_elements(By.CSS_SELECTOR, "mark.x"), mode

    # every switch at once: convex fusion with a weight, PRF, MaxSim rerank
    Select(browser.find_element(By.ID, "mode")).select_by_value("hybrid")  # enables the fusion fields
    Select(browser.find_element(By.ID, "fusion")).select_by_value("convex")
    browser.find_element(By.ID, "alpha").send_keys("0.4")
    browser.find_element(By.ID, "prf").click()
    browser.find_element(By.ID, "rerank").click()
    results = search(browser, "baking bread with a sourdough starter", "hybrid")
    assert results[0].find_elements(By.CSS_SELECTOR, ".badge")  # "reranked"
    assert "rerank" in browser.find_element(By.ID, "server-time").text


def test_explanation_shows_a_chart(browser, server):
    open_console(browser, server.url)
    results = search(browser, "wind turbines and solar power", "hybrid", k=3)
    top = results[0]
    button = top.find_element(By.CSS_SELECTOR, ".explain-btn")
    button.send_keys(Keys.ENTER)  # keyboard usable
    panel = top.find_element(By.CSS_SELECTOR, ".explanation")
    wait(browser).until(lambda d: panel.find_elements(By.CSS_SELECTOR, ".terms .bar-row"))
    assert button.get_attribute("aria-expanded") == "true" and panel.is_displayed()
    charts = panel.find_elements(By.CSS_SELECTOR, ".chart")
    lists = {row.find_element(By.CSS_SELECTOR, ".bar-label").text: row.find_element(By.CSS_SELECTOR, ".bar-value").text
             for row in charts[0].find_elements(By.CSS_SELECTOR, ".bar-row")}
    assert set(lists) == {"sparse", "bm25", "dense"}
    assert all(re.match(r"rank \d+ · score ", v) for v in lists.values()), lists
    headings = [h.text for h in panel.find_elements(By.TAG_NAME, "h4")]
    assert any(h.startswith("Sparse (SPLADE) terms: score") for h in headings)
    assert any(h.startswith("BM25 terms: score") for h in headings)
    bars = panel.find_elements(By.CSS_SELECTOR, ".bar")
    assert bars and max(b.size["width"] for b in bars) > 50  # drawn, and the largest is long
    if SCREENSHOTS:
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(Path(SCREENSHOTS) / "console-search.png"))
    button.click()
    assert button.get_attribute("aria-expanded") == "false" and not panel.is_displayed()

    # without "Explain" the search asks for none; opening one asks for it then
    browser.find_element(By.ID, "explain").click()
    top = search(browser, "wind turbines and solar power", "sparse", k=3)[0]
    assert not top.find_elements(By.CSS_SELECTOR, "mark.x")  # no explanation: no expansion terms
    top.find_element(By.CSS_SELECTOR, ".explain-btn").click()
    panel = top.find_element(By.CSS_SELECTOR, ".explanation")
    wait(browser).until(lambda d: panel.find_elements(By.CSS_SELECTOR, ".terms .bar-row"))
    assert [r.find_element(By.CSS_SELECTOR, ".bar-label").text
            for r in panel.find_elements(By.CSS_SELECTOR, ".chart")[0].find_elements(By.CSS_SELECTOR, ".bar-row")] == ["sparse"]


@pytest.fixture
def gated_jobs(server, monkeypatch):
    """Job steps wait for the test's go-ahead: progress is observed chunk by chunk."""
    jobs = server.app.state.jobs
    gate = threading.Semaphore(0)
    step = jobs._step

    def gated(job, batch):
        gate.acquire(timeout=WAIT)
        return step(job, batch)
    monkeypatch.setattr(jobs, "_step", gated)
    yield gate
    for _ in range(100):  # nothing left waiting
        gate.release()


def new_documents(n: int) -> list[dict]:
    taken = {d["id"] for d in load_corpus(per_topic=2, topics=8)}
    docs = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    return [d for d in docs if d["id"] not in taken][:n]


def documents_of(driver, name: str) -> int:
    """The count the collections table shows. The console re-renders the table as jobs report
    progress, so a row found a moment ago may be gone: read it again (a bounded few times)."""
    for attempt in range(20):
        try:
            cell = driver.find_element(By.CSS_SELECTOR, f'tr[data-collection="{name}"] td.documents')
            return int(cell.text.replace(",", ""))
        except StaleElementReferenceException:
            if attempt == 19:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


def upload(driver, path: Path):
    Select(driver.find_element(By.ID, "upload-collection")).select_by_value("demo")
    driver.find_element(By.ID, "upload-file").send_keys(str(path))
    before = len(driver.find_elements(By.CSS_SELECTOR, "#jobs > li"))
    driver.find_element(By.ID, "upload-button").click()
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#jobs > li")) > before or message(d))
    assert message(driver) == ""
    return driver.find_elements(By.CSS_SELECTOR, "#jobs > li")[0]  # newest first


def test_upload_runs_a_job_to_done_with_progress_and_cancel(browser, server, gated_jobs, tmp_path):
    open_console(browser, server.url, "collections")
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-collection="demo"]'))
    before = documents_of(browser, "demo")
    docs = new_documents(3 * CHUNK)
    src = tmp_path / "more.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))

    job = upload(browser, src)
    assert "upload:more.jsonl" in job.text
    progress = job.find_element(By.TAG_NAME, "progress")
    gated_jobs.release()  # one chunk
    wait(browser).until(lambda d: job.find_element(By.CLASS_NAME, "job-numbers").text.startswith(f"{CHUNK} / {len(docs)}"))
    assert job.get_attribute("data-status") == "running"
    assert progress.get_attribute("max") == str(len(docs)) and progress.get_attribute("value") == str(CHUNK)
    numbers = job.find_element(By.CLASS_NAME, "job-numbers").text
    assert re.search(r"docs/s · ETA \d+", numbers), numbers
    assert job.find_element(By.CLASS_NAME, "job-cancel").is_displayed()
    if SCREENSHOTS:
        browser.save_screenshot(str(Path(SCREENSHOTS) / "console-collections.png"))
    gated_jobs.release()
    gated_jobs.release()
    wait(browser).until(lambda d: job.get_attribute("data-status") == "done")
    assert progress.get_attribute("value") == str(len(docs))
    assert not job.find_element(By.CLASS_NAME, "job-cancel").is_displayed()
    wait(browser).until(lambda d: documents_of(d, "demo") == before + len(docs))

    # cancel: the job is running, held before its first chunk
    job = upload(browser, src)
    cancel = job.find_element(By.CLASS_NAME, "job-cancel")
    wait(browser).until(lambda d: job.get_attribute("data-status") == "running")
    cancel.click()
    wait(browser).until(lambda d: job.get_attribute("data-status") in ("cancelling", "cancelled"))
    gated_jobs.release()
    wait(browser).until(lambda d: job.get_attribute("data-status") == "cancelled")
    assert documents_of(browser, "demo") == before + len(docs)


def test_api_docs_render_offline(browser, server):
    browser.get(f"{server.url}/docs")
    op = wait(browser).until(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, '.opblock-summary-path[data-path="/collections/{name}/search"]')))
    assert op.text.replace("\u200b", "") == "/collections/{name}/search"
    assert browser.find_element(By.CSS_SELECTOR, "button.authorize").is_displayed()  # securitySchemes
    assert len(browser.find_elements(By.CSS_SELECTOR, ".opblock")) > 10

    browser.get(f"{server.url}/redoc")
    wait(browser).until(EC.visibility_of_element_located(
        (By.CSS_SELECTOR, '[id="tag/search/operation/search_collections__name__search_post"]')))
    assert "lsr-search" in browser.find_element(By.CSS_SELECTOR, ".api-info h1").text

    browser.get(f"{server.url}/")  # the console links to both
    assert {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "nav a")} >= {
        f"{server.url}/docs", f"{server.url}/redoc"}


def test_console_without_keys_and_a_damaged_collection(browser, tmp_path):
    """No keys configured (loopback only): the console needs none. A damaged collection is
    listed with its damage report; a new one is created from the form."""
    data = tmp_path / "open"
    with Server(data) as s:
        r = httpx.post(f"{s.url}/collections", json={"name": "broken", **BM25_ONLY})
        assert r.status_code == 201, r.text
    meta = data / "broken" / "collection.json"  # damaged while no server runs
    raw = bytearray(meta.read_bytes())
    raw[len(raw) // 2] ^= 0x5A
    meta.write_bytes(bytes(raw))

    with Server(data) as s:
        open_console(browser, s.url, "collections", key=None)
        row = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, 'tr[data-collection="broken"]')))
        assert message(browser) == "" and browser.find_element(By.ID, "key-state").text == "no key"
        assert row.find_element(By.CSS_SELECTOR, "td.state").text == "damaged"
        report = browser.find_element(By.CSS_SELECTOR, "tr.damage-report").text
        assert report.startswith("Damage: collection.json") and len(report) > 30, report
        assert browser.find_element(By.CSS_SELECTOR, '#collection option[value="broken"]').get_attribute("disabled")

        browser.find_element(By.ID, "new-name").send_keys("fresh", Keys.ENTER)
        wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-collection="fresh"]'))
        assert documents_of(browser, "fresh") == 0
        assert browser.find_element(By.CSS_SELECTOR, 'tr[data-collection="fresh"] td.state').text == "ready"
        browser.get("about:blank")  # nothing polls the server while it stops
