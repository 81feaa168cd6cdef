"""What every executorctl command needs: the settings of the stack, Redis, the exchange client, the clock and
the output (rich colour and tables for a person at a terminal, plain text when piped or with --plain)."""
from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import redis

from shared.adapters.signing import config_signer
from shared.adapters.binance_rest import BinanceClient
from shared.adapters.redis_streams import decode_fields
from shared.adapters.shared_backoff import RedisBackoff
from shared.clock import Clock, make_clock
from shared.config import Config
from shared.domain.messages import StreamMessage
from shared.domain.position import State, decode_state

# Every process of the stack that writes a heartbeat `{prefix}hb:<process>`.
PROCESSES = ("signal_ingest", "position_engine", "exit_manager", "watchdog", "notifier", "user_stream")
STREAMS = ("signals", "rejects", "positions", "orders", "events", "commands", "alerts")


class CtlError(Exception):
    """A failure the operator must read (printed without a traceback); `code` is the exit status."""

    def __init__(self, msg: str, code: int = 2) -> None:
        super().__init__(msg)
        self.code = code


def jsonable(v: Any) -> Any:
    """Plain JSON values: Decimals as strings (money keeps its digits), structs as dicts."""
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, msgspec.Struct):
        return jsonable(msgspec.structs.asdict(v))
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    return v


def human(v: Any) -> str:
    """A number for a person: Binance's padded decimals without their trailing zeros (at least 2 decimals for
    prices); anything else as str."""
    if isinstance(v, Decimal):
        if not v.is_finite():
            return str(v)
        text = format(v.normalize(), "f")
        whole, _, frac = text.partition(".")
        if len(frac) < 2 and abs(v) >= 1:
            frac = frac.ljust(2, "0")
        return f"{whole}.{frac}" if frac else whole
    if isinstance(v, str):
        try:
            return human(Decimal(v)) if v and v.replace(".", "", 1).replace("-", "", 1).isdigit() else v
        except ArithmeticError:
            return v
    return "-" if v is None else str(v)


def fmt_ts(at: float | None, with_date: bool = True) -> str:
    """UTC time of an epoch value; '-' when unset."""
    if not at:
        return "-"
    fmt = "%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S"
    return datetime.fromtimestamp(at, tz=UTC).strftime(fmt)


def fmt_dur(sec: float | None) -> str:
    """A duration as 1h02m / 3m05s / 4.2s."""
    if sec is None:
        return "-"
    s = abs(sec)
    if s < 60:
        out = f"{s:.1f}s"
    elif s < 3600:
        out = f"{int(s // 60)}m{int(s % 60):02d}s"
    elif s < 86400:
        out = f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    else:
        out = f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"
    return ("-" if sec < 0 else "") + out


def operator_name(r: redis.Redis) -> str:
    """Who sends a command: the Redis ACL user this connection is authenticated as (ACL WHOAMI), the only
    name Redis itself vouches for; never free text (issue 21)."""
    try:
        who = r.acl_whoami()
    except redis.RedisError as e:
        raise CtlError(f"cannot tell which Redis user writes the command (ACL WHOAMI): {e}", 2) from None
    return who.decode() if isinstance(who, bytes) else str(who)


class Out:
    """Where a person reads: rich when stdout is a terminal (and not --plain), else plain lines."""

    def __init__(self, plain: bool, as_json: bool = False) -> None:
        self.as_json = as_json
        self.rich = not plain and not as_json and sys.stdout.isatty()
        self.console = None
        if self.rich:
            from rich.console import Console
            self.console = Console(highlight=False)

    def line(self, text: str = "", style: str = "") -> None:
        """One line; `style` (rich markup style: red, green, yellow, bold...) only colours it on a terminal."""
        if self.console is not None:
            from rich.text import Text
            self.console.print(Text(text, style=style) if style else Text(text))
        else:
            print(text, flush=True)

    def heading(self, text: str) -> None:
        """A section title."""
        if self.console is not None:
            self.console.rule(f"[bold]{text}", align="left")
        else:
            print(f"== {text}", flush=True)

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "",
              styles: Sequence[str] | None = None, wrap: Sequence[int] = ()) -> None:
        """Rows under column names: a rich table on a terminal, aligned text otherwise. `styles` (one per
        row, may be '') colour whole rows on a terminal; only the columns in `wrap` may wrap on a narrow one."""
        rows = [[("" if c is None else str(c)) for c in r] for r in rows]
        styles = list(styles or [""] * len(rows))
        if self.console is not None:
            from rich.table import Table
            t = Table(title=title or None, title_justify="left", show_edge=False, pad_edge=False, box=None,
                      header_style="bold underline")
            for i, c in enumerate(columns):
                t.add_column(c, no_wrap=i not in wrap, overflow="fold")
            for r, st in zip(rows, styles):
                t.add_row(*r, style=st or None)
            self.console.print(t)
            return
        if title:
            print(title)
        widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
        print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
        for r in rows:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        sys.stdout.flush()

    def json(self, doc: Any) -> None:
        """A JSON document on stdout (for scripts)."""
        print(json.dumps(jsonable(doc), indent=2, sort_keys=False), flush=True)


class Ctx:
    """The stack as one command sees it."""

    def __init__(self, cfg: Config, out: Out) -> None:
        self.cfg, self.out = cfg, out
        self.r = redis.Redis.from_url(cfg.REDIS_URL, socket_timeout=10, socket_connect_timeout=5)
        self.clock: Clock = make_clock(cfg.CLOCK, self.r, cfg.EXEC_PREFIX)
        self._client: BinanceClient | None = None

    def key(self, name: str) -> str:
        return self.cfg.key(name)

    def client(self) -> BinanceClient:
        """The exchange client the services use (same endpoint, keys, margin mode and shared 429 back-off)."""
        if self._client is None:
            c = self.cfg
            margin = ("isolated" if c.MARGIN_ISOLATED else "cross") if c.TRADE_MODE == "margin" else None
            self._client = BinanceClient(c.BINANCE_BASE_URL, c.BINANCE_API_KEY, c.BINANCE_API_SECRET,
                                         recv_window=c.RECV_WINDOW, timeout=c.BINANCE_TIMEOUT_SEC,
                                         backoff=RedisBackoff(self.r, self.key("backoff")), margin=margin,
                                         signer=config_signer(c.BINANCE_API_SECRET, c.BINANCE_PRIVATE_KEY_FILE,
                                                              c.BINANCE_PRIVATE_KEY_PASSPHRASE))
            # An unreachable exchange is reported by the first real call, with its context.
            with contextlib.suppress(Exception):
                self._client.sync_time()
        return self._client

    def state(self) -> State:
        raw = self.r.get(self.key("state"))
        return decode_state(raw) if raw else State()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self.r.close()


def decode_row(fields: dict[bytes, bytes]) -> StreamMessage | None:
    """A stream entry's message, or None when it is not one of ours (e.g. a marker) or is malformed."""
    try:
        return decode_fields(fields)
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
        return None


def entry_time(entry_id: bytes | str) -> float:
    """Wall time (epoch s) at which Redis stored a stream entry, from its id."""
    s = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(s.split("-", 1)[0]) / 1000.0
