"""The dashboard in a real headless browser (Debian's chromium driven by Selenium through chromedriver) on the
real stack: no console error, the position and its three legs during a trade, the stop's new price after
break-even without a reload, a wrong token refused. Saves a screenshot (DASHBOARD_SCREENSHOT=path to keep one)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests

from tests.redis_helpers import free_port
from tests.stack import Stack

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# CI's set-up installs them (scripts/setup.sh, as root): there a missing browser is a failure, not a skip.
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
                                reason="chromium + chromium-driver not installed (scripts/setup.sh installs them)")
TOKEN = "dashboard-test-token-0123456789"


@pytest.fixture()
def stack(tmp_path: Path, redis_url, market_file, market_bars, moment):
    s = Stack(tmp_path, redis_url, market_file, market_bars[moment.index + 1].ts,
              DASHBOARD_PORT=str(free_port()), DASHBOARD_TOKEN=TOKEN, METRICS_CACHE_SEC="0.2")
    s.start_all()
    s.start("dashboard")
    s.base = f"http://127.0.0.1:{s.env['DASHBOARD_PORT']}"
    s.wait(lambda: _healthy(s.base), 30, "dashboard answering")
    yield s
    s.stop_all()


def _healthy(base: str) -> bool:
    try:
        return requests.get(base + "/healthz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture()
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1500,1800"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield drv
    drv.quit()


def _text(drv, css: str) -> str:
    try:
        return drv.find_element(By.CSS_SELECTOR, css).text
    except WebDriverException:
        return ""


def _severe(drv) -> list[dict]:
    return [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def test_dashboard_live_trade_in_a_browser(stack: Stack, browser, market_bars, moment, tmp_path):
    s, drv = stack, browser
    drv.get(s.base + "/?token=" + TOKEN)
    s.wait(lambda: _text(drv, "#conn") == "live" and _text(drv, "tr[data-process=position_engine] td:nth-child(2)")
           == "alive", 20, "page connected, processes shown")
    assert "?token" not in drv.current_url, "the token stays out of the address bar"
    drv.execute_script("window.__same_page = 'yes';")
    s.append_peak("long", market_bars[moment.index].close)
    s.wait(lambda: len(drv.find_elements(By.CSS_SELECTOR, "#legs tr[data-leg]")) == 3
           and all(_text(drv, f"tr[data-leg={n}] td.status") == "PLACED" for n in ("tp1", "tp2", "trail")),
           30, "three legs PLACED on the page")
    pos = s.state().position
    # Each read waits: the page re-renders its tables on every push, so one read may meet a row being replaced.
    s.wait(lambda: pos.trade_key in _text(drv, "#position-title") and "LONG" in _text(drv, "#position-title"),
           5, "the position's key and side")
    for lg in pos.legs:
        row = f"tr[data-leg={lg.name}]"
        want = (str(lg.stop_price.normalize()), str(lg.tp_price.normalize()) if lg.tp_price is not None else "-")
        s.wait(lambda: (_text(drv, row + " td.stop"), _text(drv, row + " td.tp")) == want, 5, f"{lg.name}: {want}")
    s.wait(lambda: len(drv.find_elements(By.CSS_SELECTOR, "#orders tbody tr")) == 5, 10, "five exit orders shown")
    assert not drv.find_elements(By.CSS_SELECTOR, "#orders tr.missing")
    # Break-even: the market runs until TP1 fills and the stop moves; the page shows the new stop unreloaded.
    s.admin("/speed", {"speed": 60})
    be = s.wait(lambda: next((e for e in s.events("stop_move")), None), 120, "the stop moved after TP1")
    s.admin("/speed", {"speed": 0})  # hold the market: the moved leg stays open while the page is read
    assert be.data["why"] == "break_even"
    new_stop, leg = str(be.data["stop"]), str(be.data["leg"])
    s.wait(lambda: _text(drv, f"tr[data-leg={leg}] td.stop") == new_stop, 10, f"{leg} stop {new_stop} on the page")
    assert drv.execute_script("return window.__same_page;") == "yes", "the page was reloaded"
    # The state holds the new stop a moment before the audit trail says why: the next push brings the event.
    s.wait(lambda: drv.find_elements(By.CSS_SELECTOR, "#audit tr[data-kind=stop_move]"), 5, "stop_move in the audit")
    shot = Path(os.environ.get("DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    assert drv.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    assert _severe(drv) == [], "console errors on the page"


def test_dashboard_refuses_a_wrong_token(stack: Stack, browser):
    s, drv = stack, browser
    drv.get(s.base + "/?token=wrong-token-wrong-token")
    assert _text(drv, "#refused") == "Refused"
    drv.get(s.base + "/")
    assert _text(drv, "#refused") == "Refused" and not drv.find_elements(By.CSS_SELECTOR, "#legs")
    assert requests.get(s.base + "/api/document", timeout=5).status_code == 401
    assert requests.get(s.base + "/events", timeout=5).status_code == 401
    ok = requests.get(s.base + "/api/document", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["redis_up"] is True
