"""executorctl against a running stack: real Redis, the paper exchange and the services as separate processes;
executorctl itself runs as a separate command, the way an operator runs it."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from shared.adapters.market_files import write_bars
from shared.adapters.redis_streams import decode_fields
from tests.stack import HOME, Stack

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def stack(tmp_path: Path, redis_url, market_file, market_bars, moment):
    s = Stack(tmp_path, redis_url, market_file, market_bars[moment.index + 1].ts)
    s.start_all()
    yield s
    s.stop_all()


def ctl(s: Stack, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run executorctl as a command with the stack's environment (stdout is a pipe: plain output)."""
    return subprocess.run([sys.executable, "-m", "services.executorctl", *args], cwd=HOME, env=s.env_for("executorctl"),
                          capture_output=True, text=True, timeout=timeout, check=False)


def ctl_json(s: Stack, *args: str, ok_codes: tuple[int, ...] = (0,)) -> dict:
    res = ctl(s, *args, "--json")
    assert res.returncode in ok_codes, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}\n{s.logs()}"
    return json.loads(res.stdout)


def _exit_legs_resting(s: Stack) -> bool:
    opened = [o for o in s.open_orders() if "-en-" not in o["clientOrderId"]]
    return len({o["orderListId"] for o in opened if o["orderListId"] != -1}) == 2 and len(opened) == 5


def open_position(s: Stack, market_bars, moment) -> str:
    """A long that fills at once (the demo's moment; the market stands still), protected by its three legs."""
    s.append_peak("long", market_bars[moment.index].close)
    s.wait(lambda: _exit_legs_resting(s) and s.state().position.status == "OPEN_FILLED", 30, "protected position")
    return s.state().position.trade_key


def test_status_shows_live_position_then_dead_process(stack: Stack, market_bars, moment):
    s = stack
    tk = open_position(s, market_bars, moment)
    st = ctl_json(s, "status", ok_codes=(0, 1))  # notifier/user_stream do not run in tests
    pos = st["position"]
    assert pos["trade_key"] == tk and pos["side"] == "long" and pos["status"] == "OPEN_FILLED"
    assert [lg["name"] for lg in pos["legs"]] == ["tp1", "tp2", "trail"]
    assert all(lg["status"] == "PLACED" for lg in pos["legs"])
    assert Decimal(pos["held"]) > 0 and "unrealised_quote" in pos and "unrealised_r" in pos
    bid = Decimal(st["exchange"]["bid"])
    expect = ((bid - Decimal(pos["avg_entry"])) * Decimal(pos["held"])).quantize(Decimal("0.0001"))
    assert Decimal(pos["unrealised_quote"]) == expect
    assert st["exchange"]["missing"] == [] and st["exchange"]["unexpected"] == []
    assert len(st["exchange"]["open_orders"]) == 5
    alive = {p["process"]: p["alive"] for p in st["processes"]}
    assert all(alive[p] for p in ("signal_ingest", "position_engine", "exit_manager", "watchdog"))
    streams = {x["stream"]: x for x in st["streams"]}
    assert streams["signals"]["length"] == 1
    assert any(g["group"] == "position_engine" and g["lag"] == 0 for g in streams["signals"]["groups"])
    assert st["halt"] is None
    # The exit manager dies: status says so (after its heartbeat's TTL), in JSON and on the screen.
    s.kill("exit_manager")
    s.wait(lambda: not s.r.exists(f"{s.prefix}hb:exit_manager"), 15, "exit_manager heartbeat expired")
    st = ctl_json(s, "status", ok_codes=(1,))
    assert {p["process"]: p["alive"] for p in st["processes"]}["exit_manager"] is False
    assert "exit_manager has no heartbeat" in st["problems"] and st["healthy"] is False
    plain = ctl(s, "status")
    assert plain.returncode == 1
    assert "exit_manager" in plain.stdout and "DOWN" in plain.stdout and tk in plain.stdout
    assert "\x1b[" not in plain.stdout, "colour codes in piped output"
    # Emergency with the exit manager dead: it halts, does NOT sell by itself, and says what to do.
    rep = ctl_json(s, "emergency", "--timeout", "10", ok_codes=(1,))
    steps = {x["step"]: x for x in rep["steps"]}
    assert steps["halt"]["ok"] and not steps["flatten"]["ok"] and "restart" in steps["flatten"]["detail"]
    assert not any("-fl-" in o["clientOrderId"] for o in s.orders())
    # the flatten it queued for the dead exit manager names the trade (and may wait an hour for its restart)
    fl = [c for c in (decode_fields(f) for _id, f in s.r.xrange(f"{s.prefix}commands", "-", "+")) if c.cmd == "flatten"]
    assert fl and fl[-1].trade_key == tk and fl[-1].expires_at == fl[-1].at + 3600 and fl[-1].by == _whoami(s)
    # The last resort sells now, with the exit manager's own flatten id; the exit manager adopts it on restart.
    rep = ctl_json(s, "emergency", "--last-resort", "--timeout", "10")
    assert rep["ok"] is True, rep
    assert s.open_orders() == []
    flat = [o for o in s.orders() if "-fl-" in o["clientOrderId"]]
    assert len(flat) == 1 and flat[0]["clientOrderId"] == f"{tk}-fl-0" and flat[0]["status"] == "FILLED"
    again = ctl_json(s, "emergency", "--last-resort", "--timeout", "10")  # repeated: adopted, never sold twice
    assert again["ok"] is True and "adopted" in {x["step"]: x for x in again["steps"]}["last resort"]["detail"]
    s.start("exit_manager")
    s.wait(lambda: s.state().position is None, 30, "exit manager booked the last-resort order on restart")
    closed = s.state().last_closed
    assert closed.trade_key == tk and s.open_orders() == []
    assert [o["clientOrderId"] for o in s.orders() if "-fl-" in o["clientOrderId"]] == [f"{tk}-fl-0"]
    sold = sum(Decimal(o["executedQty"]) for o in s.orders() if o["side"] == "SELL")
    assert closed.qty == sold and sold == Decimal(flat[0]["executedQty"])
    assert closed.exit_reason.startswith("flatten") and not s.events("manual_close_detected")


def test_halt_stops_entries_then_resume(stack: Stack, market_bars, moment, tmp_path: Path):
    s = stack
    follow_out = tmp_path / "follow.txt"
    with open(follow_out, "w") as fh:
        follower = subprocess.Popen([sys.executable, "-m", "services.executorctl", "events", "--follow"], cwd=HOME,
                                    env=s.env_for("executorctl"), stdout=fh, stderr=subprocess.STDOUT)
    try:
        # The follower prints the recent past first (the services' start-up events), then follows.
        s.wait(lambda: "engine_ready" in follow_out.read_text(), 15, "events --follow printed the past")
        res = ctl(s, "halt", "--reason", "maintenance")
        assert res.returncode == 0, res.stderr + s.logs()
        assert "halt_set" in res.stdout and s.r.exists(f"{s.prefix}halt")
        s.wait(lambda: "halt_set" in follow_out.read_text(), 10, "events --follow prints the new event")
    finally:
        follower.terminate()
        follower.wait(10)
    s.append_peak("long", market_bars[moment.index].close)
    ev = s.wait(lambda: next((e for e in s.events("signal_ignored")), None), 20, "signal ignored")
    assert ev.data["reason"] == "halted"
    assert s.orders() == [] and s.state().position is None
    st = ctl_json(s, "status", ok_codes=(0, 1))
    # `by` is the Redis ACL user executorctl is connected as (ACL WHOAMI), never free text; every command expires
    whoami = _whoami(s)
    assert st["halt"]["reason"] == "maintenance" and st["halt"]["by"] == whoami
    cmds = [decode_fields(f) for _id, f in s.r.xrange(f"{s.prefix}commands", "-", "+")]
    assert cmds[-1].cmd == "halt" and cmds[-1].by == whoami and cmds[-1].expires_at == cmds[-1].at + 60
    out = ctl(s, "events", "--kind", "signal_ignored")
    assert out.returncode == 0 and "halted" in out.stdout
    sig = ctl(s, "signals")
    assert sig.returncode == 0 and "SIGNAL long" in sig.stdout
    ack = ctl_json(s, "resume")
    assert ack["ack"] == "halt_cleared" and not s.r.exists(f"{s.prefix}halt")
    # Nothing to cancel or flatten: the owners say so.
    assert ctl_json(s, "cancel-entry")["ack"] == "command_noop"
    assert ctl_json(s, "flatten")["ack"] == "command_noop"


def _whoami(s: Stack) -> str:
    """The Redis ACL user executorctl connects as (its REDIS_URL: the operator)."""
    who = redis.Redis.from_url(s.env_for("executorctl")["REDIS_URL"]).acl_whoami()
    return who.decode() if isinstance(who, bytes) else who


def _admin_fills(s: Stack) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
    """(bought qty, bought quote, sold qty, sold quote, fees in quote) from the exchange's own records."""
    bq = bquote = sq = squote = fees = Decimal(0)
    for o in s.orders():
        for f in o.get("fills", []):
            qty, price = Decimal(f["qty"]), Decimal(f["price"])
            quote = Decimal(f.get("quoteQty") or qty * price)
            if o["side"] == "BUY":
                bq, bquote = bq + qty, bquote + quote
            else:
                sq, squote = sq + qty, squote + quote
            c = Decimal(f["commission"])
            fees += c * price if f["commissionAsset"] == "BTC" else c
    return bq, bquote, sq, squote, fees


def _admin_base_fees(s: Stack) -> Decimal:
    """Commissions paid in the base asset (BTC), from the exchange's own records."""
    return sum((Decimal(f["commission"]) for o in s.orders() for f in o.get("fills", [])
                if f["commissionAsset"] == "BTC"), Decimal(0))


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 20_000, f"{path}: not a non-trivial PNG ({len(data)} bytes)"
    from PIL import Image
    img = Image.open(path).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 22)

    def near(rgb: tuple[int, int, int]) -> int:
        return sum(n for n, c in colours if all(abs(a - b) <= 40 for a, b in zip(c, rgb)))
    # The trade is drawn: the entry marker (tab:blue) and the stop line (tab:red) are on the image.
    assert near((31, 119, 180)) > 50 and near((214, 39, 40)) > 50


def test_emergency_flattens_then_report_matches_exchange(stack: Stack, market_bars, moment, tmp_path: Path):
    s = stack
    tk = open_position(s, market_bars, moment)
    s.admin("/advance", {"points": 8})  # two minutes of market: the feed grows, the trade has a duration
    res = ctl(s, "emergency", "--reason", "drill")  # the plain report a person reads
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{s.logs()}"
    assert "flatten_requested" in res.stdout and "flatten_filled" in res.stdout and f"closed         {tk}" in res.stdout
    assert "every step succeeded" in res.stdout and "FAIL" not in res.stdout
    st = s.state()
    assert st.position is None and st.last_closed.trade_key == tk and st.last_closed.exit_reason.startswith("flatten")
    assert s.open_orders() == [] and s.r.exists(f"{s.prefix}halt")
    assert any("-fl-" in o["clientOrderId"] and o["status"] == "FILLED" for o in s.orders())
    # Report: the exchange's fills, fees included, are what the report adds up.
    csv_path, png = tmp_path / "trades.csv", tmp_path / "trades.png"
    doc = ctl_json(s, "report", "--csv", str(csv_path), "--chart", str(png))
    assert len(doc["trades"]) == 1
    t, tot = doc["trades"][0], doc["totals"]
    assert t["trade_key"] == tk and t["source"] == "exchange" and "flatten" in t["legs"]
    bq, bquote, sq, squote, fees = _admin_fills(s)
    assert Decimal(tot["entry_qty"]) == bq and Decimal(tot["entry_quote"]) == bquote
    assert Decimal(tot["exit_qty"]) == sq and Decimal(tot["exit_quote"]) == squote
    assert abs(Decimal(tot["fees_quote"]) - fees) < Decimal("0.00000001")
    assert Decimal(t["gross_pnl"]) == st.last_closed.pnl_quote
    # net = PnL - fees - the cost of the base left over (bought - sold - base commissions), all from the exchange
    base_fees = _admin_base_fees(s)
    assert Decimal(t["dust_qty"]) == bq - sq - base_fees
    # the dust is the product's own coins, carried in the ledger and valued at the bid: not a loss
    dust = tot["dust"]
    assert Decimal(dust["ledger"]) == st.dust == bq - sq - base_fees and dust["base_commission"] is True
    bid = Decimal(s.admin("/state")["bid"])
    assert Decimal(dust["price"]) == bid and Decimal(dust["value"]) == (st.dust * bid).quantize(Decimal("0.0001"))
    assert Decimal(t["dust_value"]) == (Decimal(t["dust_qty"]) * bid).quantize(Decimal("0.0001"))
    assert "commission taken in BTC" in dust["fee_case"]
    assert Decimal(t["net_pnl"]) == (Decimal(t["gross_pnl"]) - Decimal(t["fees_quote"])).quantize(Decimal("0.0001"))
    assert t["sl_source"] and tot["avg_r"] is not None and Decimal(tot["max_drawdown"]) <= 0
    assert tot["trades"] == 1 and tot["wins"] + tot["losses"] == 1
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("trade_key,side,") and lines[1].startswith(tk)
    _check_png(png)
    plain = ctl(s, "report")
    assert plain.returncode == 0 and tk in plain.stdout and "win rate" in plain.stdout
    assert "dust ledger:" in plain.stdout and "BTC carried" in plain.stdout
    assert ctl_json(s, "report", "--since", "2099-01-01")["trades"] == []
    # The exchange away: the report comes from the audit trail (and says so); status names the problem.
    dead = {**s.env, "BINANCE_BASE_URL": "http://127.0.0.1:9", "BINANCE_TIMEOUT_SEC": "2"}
    res = subprocess.run([sys.executable, "-m", "services.executorctl", "report", "--json"], cwd=HOME, env=dead,
                         capture_output=True, text=True, timeout=60, check=False)
    t2 = json.loads(res.stdout)["trades"][0]
    assert t2["source"] == "events" and Decimal(t2["gross_pnl"]) == st.last_closed.pnl_quote and t2["notes"]
    res = subprocess.run([sys.executable, "-m", "services.executorctl", "status", "--json"], cwd=HOME, env=dead,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1 and "exchange unreachable" in json.loads(res.stdout)["problems"]
    ev = ctl(s, "events", "--trade", tk)
    assert ev.returncode == 0 and "CLOSED" in ev.stdout and "FLATTEN" in ev.stdout


def test_emergency_keep_position_verifies_stops(stack: Stack, market_bars, moment):
    s = stack
    tk = open_position(s, market_bars, moment)
    rep = ctl_json(s, "emergency", "--keep-position")
    assert rep["ok"] is True, rep
    steps = {x["step"]: x for x in rep["steps"]}
    assert {"stop tp1", "stop tp2", "stop trail"} <= set(steps)
    assert s.state().position.trade_key == tk and s.r.exists(f"{s.prefix}halt")
    stops = {o["clientOrderId"] for o in s.open_orders() if o["type"] == "STOP_LOSS_LIMIT"}
    assert {lg.stop_client_id for lg in s.state().position.legs} <= stops


def test_replay_runs_history_and_reports(tmp_path: Path, market_bars, moment):
    lo = moment.index - 420
    hi = min(len(market_bars), moment.index + 300)
    agg = tmp_path / "slice.aggregated.csv"
    write_bars(agg, market_bars[lo:hi])
    sig_bar = market_bars[moment.index]
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sig_bar.ts + 60))
    signals = tmp_path / "signals.jsonl"
    signals.write_text(json.dumps({"ts": ts, "action": "PEAK", "source": "DeltaScout", "kind": "long",
                                   "price": float(sig_bar.close), "delta": 1.0, "vol": 2.0, "imb": 0.5}) + "\n"
                       + "not json\n")
    speed = 600
    png = tmp_path / "replay.png"
    res = subprocess.run([sys.executable, "-m", "services.executorctl", "replay", "--agg", str(agg), "--signals",
                          str(signals), "--speed", str(speed), "--lead", "120", "--dir", str(tmp_path / "run"),
                          "--timeout", "90", "--chart", str(png), "--json"],
                         cwd=HOME, capture_output=True, text=True, timeout=150, check=False)
    logs = "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in (tmp_path / "run" / "logs").glob("*.log"))
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{logs}"
    doc = json.loads(res.stdout)
    assert doc["replay"]["outcome"].startswith("finished") and doc["replay"]["open_position"] is None, doc
    assert len(doc["trades"]) == 1, logs
    t = doc["trades"][0]
    assert t["side"] == "long" and Decimal(t["exit_qty"]) > 0 and t["source"] == "exchange"
    _check_png(png)
