"""Alerts (webhooks) of every kind are throttled per kind, trade and cause (INVAR_THROTTLE_SEC), the next one
says how many were held back, and a recovery message ends the episode; feed problems (bad header, missing file,
unreadable rows) are an event every time and such a throttled alert. Real Redis, real rq queue, real files."""
from __future__ import annotations


from shared.adapters.agg_feed import FeedUnavailable, read_last_bars
from shared.adapters.notify import queue as notify_queue
from shared.config import load_config
from shared.domain.bars import AGG_HEADER_LINE, BadHeader, format_ts
from shared.feed_alerts import feed_failed, feed_read
from shared.runtime import Runtime

PREFIX = "thr:"
TK = "250113-2000-L-abc123"


def runtime(redis_url: str, **env) -> Runtime:
    base = {"REDIS_URL": redis_url, "EXEC_PREFIX": PREFIX, "N8N_WEBHOOK_URL": "http://127.0.0.1:9/hook",
            "INVAR_THROTTLE_SEC": "600"}
    base.update({k: str(v) for k, v in env.items()})
    return Runtime(load_config(base), "exit_manager")


def queued(r) -> list[dict]:
    return [j.args[0] for j in notify_queue(r, PREFIX).jobs]


def test_24_identical_alerts_send_one(r, redis_url):
    rt = runtime(redis_url)
    for _ in range(24):
        rt.notify("trail_feed_bad_header", "aggregated.csv header mismatch", "ERROR", TK)
    assert [p["event"] for p in queued(r)] == ["trail_feed_bad_header"]


def test_throttle_is_per_kind_trade_and_cause_and_lets_an_escalation_through(r, redis_url):
    rt = runtime(redis_url)
    assert rt.notify("exits_error", "sl rejected", "ERROR", TK, cause="sl")
    assert not rt.notify("exits_error", "sl rejected again", "ERROR", TK, cause="sl")
    assert rt.notify("exits_error", "tp1 rejected", "ERROR", TK, cause="tp1")          # another cause
    assert rt.notify("exits_error", "sl rejected", "ERROR", "250113-2100-L-def456", cause="sl")  # another trade
    assert rt.notify("stop_nearest", "sl placed nearer", "WARN", TK, cause="sl")      # another kind
    assert rt.notify("exits_error", "sl rejected", "CRITICAL", TK, cause="sl")        # escalation
    assert not rt.notify("exits_error", "sl rejected", "ERROR", TK, cause="sl")
    assert len(queued(r)) == 5


def test_after_the_window_the_next_alert_counts_what_was_held_back_then_recovery(r, redis_url):
    rt = runtime(redis_url, INVAR_THROTTLE_SEC=1)
    assert rt.notify("trail_feed_missing", "aggregated.csv unavailable", "ERROR", TK)
    held = 0
    # every call inside the 1 s window is held back; the first one after it goes out with the count
    while not rt.notify("trail_feed_missing", "aggregated.csv unavailable", "ERROR", TK):
        held += 1
    got = queued(r)
    assert len(got) == 2 and held >= 1
    assert got[1]["details"]["held_back"] == str(held)
    assert f"({held} more held back since the last alert)" in got[1]["message"]
    assert not rt.notify("trail_feed_missing", "aggregated.csv unavailable", "ERROR", TK)
    assert rt.notify_recovered("trail_feed_missing", "aggregated.csv is readable again", TK)
    rec = queued(r)[-1]
    assert rec["event"] == "trail_feed_missing.recovered" and rec["severity"] == "INFO"
    assert rec["details"]["held_back_total"] == str(held + 1) and rec["details"]["held_back"] == "1"
    assert not rt.notify_recovered("trail_feed_missing", "again", TK)  # nothing active: nothing said
    assert rt.notify("trail_feed_missing", "aggregated.csv unavailable", "ERROR", TK)  # a new episode


def test_a_restarted_process_keeps_holding_back(r, redis_url):
    assert runtime(redis_url).notify("closed", "stop: pnl -1", "INFO", TK)
    assert not runtime(redis_url).notify("closed", "stop: pnl -1", "INFO", TK)
    assert len(queued(r)) == 1


def _rows(ts0: int, n: int) -> list[str]:
    return [f"{format_ts(ts0 + 60 * i)},10,1.0,0.1,0.5,0.5,95000,95000,95010,94990" for i in range(n)]


def _events(r, kind: str) -> list:
    from shared.adapters.redis_streams import decode_fields
    return [e for e in (decode_fields(f) for _, f in r.xrange(PREFIX + "events")) if e.kind == kind]


def test_unreadable_feed_rows_are_said_once_and_recovered(r, redis_url, tmp_path):
    """A row with text in a price column is left out of the bars (as before) but no longer silently: an event
    every read with the row, one alert, and a recovery when the feed is clean again."""
    rt = runtime(redis_url)
    feed = tmp_path / "aggregated.csv"
    rows = _rows(1_736_000_000, 10)
    bad = rows[5].replace(",95000,95000,95010,", ",95000,n/a,95010,")
    feed.write_text("\n".join([AGG_HEADER_LINE, *rows[:5], bad, *rows[6:]]) + "\n")
    for _ in range(5):
        read = read_last_bars(feed, 240)
        assert read.bad_rows == 1 and len(read.bars) == 9
        feed_read(rt, read, TK, "trail_")
    ev = _events(r, "trail_feed_bad_rows")
    assert len(ev) == 5 and ev[0].data["bad_rows"] == 1 and "n/a" in ev[0].data["samples"][0]
    assert [p["event"] for p in queued(r)] == ["trail_feed_bad_rows"]
    assert "n/a" in queued(r)[0]["message"]
    feed.write_text("\n".join([AGG_HEADER_LINE, *rows]) + "\n")
    feed_read(rt, read_last_bars(feed, 240), TK, "trail_")
    assert [p["event"] for p in queued(r)] == ["trail_feed_bad_rows", "trail_feed_bad_rows.recovered"]


def test_missing_feed_and_bad_header_are_events_and_one_alert_each(r, redis_url, tmp_path):
    rt = runtime(redis_url)
    feed = tmp_path / "aggregated.csv"
    for _ in range(3):
        try:
            read_last_bars(feed, 240)
        except FeedUnavailable as e:
            feed_failed(rt, "feed_missing", str(e), TK, "trail_", action="no move")
    feed.write_text("Timestamp,Trades,Qty\n" + "\n".join(_rows(1_736_000_000, 3)) + "\n")
    for _ in range(3):
        try:
            read_last_bars(feed, 240)
        except BadHeader as e:
            feed_failed(rt, "feed_bad_header", str(e), TK, "trail_", action="no move")
    assert len(_events(r, "trail_feed_missing")) == 3 and len(_events(r, "trail_feed_bad_header")) == 3
    assert [p["event"] for p in queued(r)] == ["trail_feed_missing", "trail_feed_bad_header"]
    feed.write_text("\n".join([AGG_HEADER_LINE, *_rows(1_736_000_000, 3)]) + "\n")
    feed_read(rt, read_last_bars(feed, 240), TK, "trail_")
    assert len(queued(r)) == 4
    assert sorted(p["event"] for p in queued(r)[2:]) == ["trail_feed_bad_header.recovered",
                                                          "trail_feed_missing.recovered"]
