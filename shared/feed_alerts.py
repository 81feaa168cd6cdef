"""Say what is wrong with the `aggregated.csv` feed, never nothing: an event every time and a throttled alert
(Runtime.notify), and a recovery message once a read is clean again. Used by every reader of the feed."""
from __future__ import annotations

from shared.adapters.agg_feed import FeedRead
from shared.runtime import Runtime

# kind -> severity of its alert; the recovery of each is sent when a later read has none of them
FEED_ALERTS = {"feed_bad_header": "ERROR", "feed_missing": "ERROR", "feed_bad_rows": "WARN"}


def feed_failed(rt: Runtime, kind: str, error: str, trade_key: str = "", where: str = "", **fields: object) -> None:
    """The feed could not be used (`feed_bad_header` / `feed_missing`): event + throttled alert."""
    rt.event(f"{where}{kind}", trade_key, level="error", error=error, path=rt.cfg.AGG_CSV, **fields)
    rt.notify(f"{where}{kind}", error, FEED_ALERTS[kind], trade_key, path=rt.cfg.AGG_CSV)


def feed_read(rt: Runtime, read: FeedRead, trade_key: str = "", where: str = "") -> None:
    """A read succeeded: report unreadable rows (they are left out of the bars), else recover what was alerted."""
    if read.bad_rows:
        rt.event(f"{where}feed_bad_rows", trade_key, level="warning", bad_rows=read.bad_rows,
                 samples=read.bad_samples, path=rt.cfg.AGG_CSV, action="rows skipped")
        rt.notify(f"{where}feed_bad_rows", f"{read.bad_rows} unreadable row(s) in {rt.cfg.AGG_CSV} skipped, e.g. "
                  f"{read.bad_samples[0] if read.bad_samples else '?'}", "WARN", trade_key)
    for kind in FEED_ALERTS:
        if kind == "feed_bad_rows" and read.bad_rows:
            continue
        rt.notify_recovered(f"{where}{kind}", f"{rt.cfg.AGG_CSV} is readable again", trade_key)
