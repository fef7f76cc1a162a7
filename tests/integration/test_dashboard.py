"""`dimee dashboard` in a real headless browser: `dimee up --dashboard-port` on the real Kafka and Redis, the
page opened in Debian's chromium through Selenium, its numbers change once samples are produced, and a
screenshot is kept in runs/screenshots/dashboard.png."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support.deadlines import scaled
from tests.support.helpers import stream_records
from tests.support.processes import DIMEE, free_port, http_get, wait_for, write_jsonl
from tests.support.real_services import needs

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[2] / "runs" / "screenshots" / "dashboard.png"
pytestmark = needs("chromium and chromedriver (deploy/local-services.sh install)", bool(CHROMIUM and CHROMEDRIVER))


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dev dependency: pip install -e .[dev]")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # no Selenium Manager download
    yield driver
    driver.quit()


def _text(browser, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, element_id).text


def test_dashboard_shows_the_stream_live(workdir, env, tmp_path, browser):
    port, lines = free_port(), []
    up = subprocess.Popen([DIMEE, "up", "--workdir", str(workdir), "--reseed", "--policy", "DIMEE-D", "--out",
                           str(tmp_path / "dimee.predictions.jsonl"), "--dashboard-port", str(port)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    threading.Thread(target=lambda: lines.extend(up.stdout), daemon=True).start()  # type: ignore[arg-type]
    log = lambda: "".join(lines[-80:])  # noqa: E731
    try:
        wait_for(lambda: http_get(port, "/healthz")[0] == 200, 60, "the dashboard", log)
        browser.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: _text(browser, "status") == "live", 30, "the page's event stream", log)
        before = int(_text(browser, "answered"))
        wait_for(lambda: sum("stage started" in line for line in lines) >= 5, 120, "five roles started", log)
        samples = stream_records(30, seed=81)
        assert subprocess.run([DIMEE, "produce", "--source", str(write_jsonl(tmp_path / "s.jsonl", samples)),
                               "--id-col", "id"], env=env, timeout=scaled(120)).returncode == 0
        wait_for(lambda: int(_text(browser, "answered")) >= before + len(samples), 90, "the page's count", log)
        assert _text(browser, "throughput") != "–" and _text(browser, "latency-p50").endswith("ms")
        assert _text(browser, "accuracy").endswith("%")  # the samples carry labels
        assert "pool 0" in _text(browser, "centroid-table")  # the store was seeded: movement is shown per pool
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOT))
        assert SCREENSHOT.stat().st_size > 10_000
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=scaled(90)) == 0, log()
        assert any("dashboard stopped (0)" in line for line in lines), log()  # SIGTERM ends it cleanly
    finally:
        up.kill()
