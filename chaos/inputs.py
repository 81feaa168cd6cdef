"""The inputs of the run: PEAK lines appended to deltascout.log (valid ones at market time, garbage, torn
writes), and the corruptions of the files the product reads (truncated and rotated log, bad feed rows).
Every line written is recorded with what the product must do with it."""
from __future__ import annotations

import os
import random
import time
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import redis

from chaos.plan import PlannedSignal
from shared.domain.messages import Signal
from shared.domain.peak import ParseParams, parse_line


class Written(msgspec.Struct):
    line: str
    valid: bool             # the product must publish it as a signal
    key: str = ""           # its dedup key when valid
    token: str = ""         # a unique token in an invalid line, found again in its reject
    expect: str = ""        # the reject reason expected for an invalid line
    wall: float = 0.0


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Inputs:
    """Writes the log and the feed; keeps the record of every line."""

    def __init__(self, log_path: Path, feed_path: Path, params: ParseParams, r: redis.Redis, prefix: str,
                 rng: random.Random) -> None:
        self.log_path, self.feed_path, self.params = log_path, feed_path, params
        self.r, self.prefix, self.rng = r, prefix, rng
        self.written: list[Written] = []
        self.n = 0
        self.tear_next = False
        self.done: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()

    def _append(self, data: bytes) -> None:
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _token(self) -> str:
        self.n += 1
        return f"~c{self.n}~"

    # ---- valid signals ---------------------------------------------------------------------------
    def peak(self, p: PlannedSignal) -> Written:
        line = msgspec.json.encode({"ts": _iso(p.at_ts), "action": "PEAK", "source": "DeltaScout", "kind": p.kind,
                                    "price": float(p.price), "delta": 123.4, "vol": 456.7, "imb": 0.61}).decode()
        sig = parse_line(line.encode(), offset=0, now=None, params=self.params)
        assert isinstance(sig, Signal), sig
        w = Written(line, True, key=sig.key, wall=time.time())
        data = (line + "\n").encode()
        if self.tear_next:  # a torn write: half a line, a pause, the rest
            self.tear_next = False
            cut = self.rng.randrange(5, len(data) - 2)
            self._append(data[:cut])
            time.sleep(0.3)
            self._append(data[cut:])
            self.done["torn_line"] = self.done.get("torn_line", 0) + 1
        else:
            self._append(data)
        self.written.append(w)
        return w

    # ---- garbage ---------------------------------------------------------------------------------
    def garbage(self, n: int, market_ts: int) -> None:
        """`n` lines that must each end up on `rejects` (never on `signals`)."""
        valid = [w for w in self.written if w.valid]
        for _ in range(n):
            tok = self._token()
            choice = self.rng.choice(["text", "bad_json", "not_peak", "wrong_source", "schema", "stale", "duplicate",
                                      "too_long", "empty_price"])
            base = {"ts": _iso(market_ts), "action": "PEAK", "source": "DeltaScout", "kind": "long",
                    "price": 95000.0 + self.n, "delta": 1.0, "vol": 2.0, "imb": 0.5, "chaos": tok}
            expect = choice
            if choice == "text":
                line, expect = f"{tok} this is not json at all", "bad_json"
            elif choice == "bad_json":
                line = msgspec.json.encode(base).decode()[:-7] + tok
            elif choice == "not_peak":
                line = msgspec.json.encode({**base, "action": "VALLEY"}).decode()
            elif choice == "wrong_source":
                line = msgspec.json.encode({**base, "source": "Elsewhere"}).decode()
            elif choice == "schema":
                line = msgspec.json.encode({**base, "kind": "sideways"}).decode()
            elif choice == "empty_price":
                line, expect = msgspec.json.encode({**base, "price": None}).decode(), "schema"
            elif choice == "stale":
                line = msgspec.json.encode({**base, "ts": _iso(market_ts - 3 * 3600)}).decode()
            elif choice == "duplicate" and valid:
                orig = msgspec.json.decode(self.rng.choice(valid).line)
                line = msgspec.json.encode({**orig, "chaos": tok}).decode()
                expect = "duplicate|stale"  # stale first when the original is older than MAX_PEAK_AGE_SEC
            elif choice == "duplicate":
                line, expect = f"{tok} no valid line yet to duplicate", "bad_json"
            else:
                line = tok + " " + "x" * (self.params.max_line_bytes + 100)
            self._append((line + "\n").encode())
            self.written.append(Written(line, False, token=tok, expect=expect, wall=time.time()))
        self.done["garbage_lines"] = self.done.get("garbage_lines", 0) + n

    # ---- whole-file corruptions ------------------------------------------------------------------
    def _consumed(self, timeout: float) -> bool:
        """Has ingest committed an offset at the end of the current file? (copytruncate and rename rotation
        lose what was not read yet: DeltaScout's own rotation races the same way, so the run waits.)"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                st = os.stat(self.log_path)
                h = self.r.hgetall(f"{self.prefix}ingest:offset")
                if int(h.get(b"inode", 0)) == st.st_ino and int(h.get(b"offset", -1)) == st.st_size:
                    return True
            except (redis.RedisError, OSError, ValueError):
                pass
            time.sleep(0.05)
        return False

    def corrupt(self, kind: str, n: int, market_ts: int) -> str:
        """Apply one corruption; returns what was done (or why it was skipped)."""
        if kind == "garbage_lines":
            self.garbage(n, market_ts)
            return f"{n} garbage lines"
        if kind == "torn_line":
            self.tear_next = True
            return "next PEAK line written torn"
        if kind == "bad_csv_rows":
            rows = ["not,a,bar\n",
                    "Timestamp,Trades,TotalQty,AvgSize,BuyQty,SellQty,AvgPrice,ClosePrice,HiPrice,LowPrice\n",
                    "2099-99-99 99:99:00,1,2,3,4,5,6,7,8,9\n", ",,,,,,,,,\n", "1736798400,abc,1,1,1,1,1,1,1,1\n"]
            data = "".join(self.rng.choice(rows) for _ in range(n)).encode()
            fd = os.open(self.feed_path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            self.done[kind] = self.done.get(kind, 0) + 1
            return f"{n} bad rows appended to the feed"
        if not self._consumed(5.0):
            self.skipped[kind] = self.skipped.get(kind, 0) + 1
            return "skipped: ingest had not read the whole log within 5 s"
        if kind == "truncate_log":
            os.truncate(self.log_path, 0)
        elif kind == "rotate_log":
            os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
            self.log_path.touch()
        self.done[kind] = self.done.get(kind, 0) + 1
        return kind
