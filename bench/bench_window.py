"""The trading path's latency with the operator's window open: bench_entry's XADD signals -> entry order, in
one run, with nothing watching (before) and with the metrics process scraped every second and the dashboard
open in a headless chromium (after; a server-sent-events reader stands in when chromium is absent). The two
are measured in alternating blocks of BLOCK signals, so that the load of a shared host weighs on both alike.
Prints figures; asserts nothing.

    .venv/bin/python bench/bench_window.py [--signals 100]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_entry import _pct, _report, _run, entry_stack, xadd_factory  # noqa: E402
from services.metrics.source import BACKGROUND_NICE  # noqa: E402
from tests.redis_helpers import free_port, redis_server  # noqa: E402


BLOCK = 25


class Watchers:
    """A Prometheus-like scraper (every second) and a browser on the dashboard, in the background."""

    def __init__(self, metrics: str, dashboard: str) -> None:
        self.metrics, self.dashboard = metrics, dashboard
        self.stop = threading.Event()
        self.on = threading.Event()
        self.scrapes: list[float] = []
        self.pushes = 0
        self.browser = None
        self.threads = [threading.Thread(target=self._scrape, daemon=True)]

    def start(self, browser: bool) -> str:
        chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
        how = "SSE reader"
        if browser and chromium and driver:
            from selenium import webdriver
            opts = webdriver.ChromeOptions()
            opts.binary_location = chromium
            for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
                opts.add_argument(a)
            # The browser is the operator's, normally on another machine; here it shares the 2 CPUs, so it runs at
            # the window's priority (services/metrics/source.py BACKGROUND_NICE) like the dashboard it reads.
            svc = webdriver.ChromeService(executable_path=driver,
                                          popen_kw={"preexec_fn": lambda: os.nice(BACKGROUND_NICE)})
            self.browser = webdriver.Chrome(options=opts, service=svc)
            how = "headless chromium"
        else:
            self.threads.append(threading.Thread(target=self._sse, daemon=True))
        for t in self.threads:
            t.start()
        return how

    def watch(self, on: bool) -> None:
        """Open the page and scrape (on), or leave the page and stop scraping (off)."""
        if on:
            self.on.set()
        else:
            self.on.clear()
        if self.browser is not None:
            self.browser.get(self.dashboard + "/" if on else "about:blank")

    def _scrape(self) -> None:
        while not self.stop.is_set():
            if not self.on.wait(0.2):
                continue
            t0 = time.perf_counter()
            requests.get(self.metrics + "/metrics", timeout=10).raise_for_status()
            self.scrapes.append((time.perf_counter() - t0) * 1000)
            self.stop.wait(1.0)  # Prometheus' scrape interval in this benchmark

    def _sse(self) -> None:
        with requests.get(self.dashboard + "/events", stream=True, timeout=30) as resp:
            for line in resp.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith(b"event: document") and self.on.is_set():
                    self.pushes += 1

    def close(self) -> None:
        self.stop.set()
        if self.browser is not None:
            self.pushes = -1
            self.browser.quit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--signals", type=int, default=100)
    ap.add_argument("--sse", action="store_true", help="an SSE reader instead of the browser (the server's share)")
    args = ap.parse_args()
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        s = entry_stack(Path(tmp), url, METRICS_PORT=str(free_port()), DASHBOARD_PORT=str(free_port()))
        watchers = None
        try:
            s.up()
            base, ts = s.last() - 1000, s.market_ts()

            xadd = xadd_factory(s, base, ts)
            s.start("metrics")
            s.start("dashboard")
            m_url, d_url = (f"http://127.0.0.1:{s.env[k]}" for k in ("METRICS_PORT", "DASHBOARD_PORT"))
            s.wait(lambda: _up(m_url + "/metrics") and _up(d_url + "/healthz"), 30, "metrics and dashboard")
            watchers = Watchers(m_url, d_url)
            how = watchers.start(browser=not args.sse)
            _run(s, 5, xadd)  # warm-up
            before: tuple[list[float], ...] = ([], [], [], [])
            after: tuple[list[float], ...] = ([], [], [], [])
            n = 10
            for block in range(2 * max(1, args.signals // BLOCK)):
                on = block % 2 == 1
                watchers.watch(on)
                for acc, xs in zip(after if on else before, _run(s, BLOCK, lambda i, n=n: xadd(n + i))):
                    acc.extend(xs)
                n += BLOCK
            _report("before: nothing watching; XADD signals -> entry order", *before)
            _report(f"after: /metrics scraped every 1 s + dashboard open ({how}); XADD signals -> entry order",
                    *after)
            sc = watchers.scrapes
            print(f"   /metrics scrapes during 'after': n={len(sc)}  p50 {_pct(sc, 50):7.2f} ms  "
                  f"p99 {_pct(sc, 99):7.2f} ms")
            b99, a99 = _pct(before[3], 99), _pct(after[3], 99)
            print(f"FIGURE window_order_received_p99_ms before={b99:.2f} after={a99:.2f}")
        finally:
            if watchers is not None:
                watchers.close()
            s.stop_all()


def _up(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


if __name__ == "__main__":
    main()
