"""The one definition of the stack's Redis users: which keys of an EXEC_PREFIX and which commands each process may
use (README "What an operator must protect"). Used by scripts/setup.sh and scripts/up.sh (aclfile), compose
(aclfile + per-service env files), the tests' redis-server, replay and chaos (ACL SETUSER through an admin).

Every user reads its prefix (`%R~{p}*`); it writes only the keys it owns (`%W~...`). A consumer group needs write
rights on the stream it reads (XREADGROUP/XACK): a selector grants only those commands on those streams, so the
engine can consume `commands` but never XADD to it. The rq queue of the notifier lives under `rq:*` (rq's own
names); the services may enqueue there, and the worker runs only the webhook job (services/notifier/worker.py).
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

ADMIN = "admin"
VIEWER = "viewer"
OPERATOR = "operator"
# Commands no user but admin may run, whatever its categories (KEYS scans every prefix).
_NEVER = "-@admin -@dangerous -keys"
# What every non-admin user may run: read commands, connection house-keeping (PING, AUTH, HELLO, CLIENT SETNAME),
# ACL WHOAMI (executorctl names the operator from it).
_READ = "-@all +@read +@connection +acl|whoami"
_WRITE = "+@write +@transaction +@scripting"
_GROUPS = "+xreadgroup +xack +xgroup|create +xgroup|createconsumer +xautoclaim +xclaim +xpending +xinfo"
# The keys (relative to EXEC_PREFIX) every service writes: its audit events, alert throttling and the lock-step
# acknowledgements of a replay.
_SERVICE_KEYS = ("events", "alerts", "alerts:throttle:*", "lockstep:*")
# What every process that calls Binance shares: the 429/418 back-off (and its hit counter, read by the metrics) and
# the IP's order count (X-MBX-ORDER-COUNT-*, shared/adapters/order_budget.py).
_BACKOFF = ("backoff", "backoff:*", "order_count")


@dataclass(frozen=True)
class UserSpec:
    """One Redis user: keys it may write (relative to the prefix), streams it consumes through a group,
    extra selectors (keys -> commands), rq access."""
    name: str
    writes: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    only: tuple[tuple[str, str], ...] = ()
    rq: bool = False
    commands: str = ""


SERVICE_USERS: tuple[UserSpec, ...] = (
    UserSpec("signal_ingest", ("signals", "rejects", "ingest:*", "hb:signal_ingest", *_SERVICE_KEYS), rq=True),
    UserSpec("position_engine", ("state", "positions", "halt", "hb:position_engine", *_BACKOFF, *_SERVICE_KEYS),
             groups=("signals", "orders", "commands", "positions"), rq=True),
    UserSpec("exit_manager", ("state", "positions", "hb:exit_manager", *_BACKOFF, *_SERVICE_KEYS),
             groups=("positions", "orders", "commands"), rq=True),
    UserSpec("user_stream", ("orders", "user_stream:*", "hb:user_stream", *_BACKOFF, *_SERVICE_KEYS), rq=True),
    # The watchdog may SET the halt flag (I13 kill switch) and nothing else on it; it reads INFO (persistence,
    # memory) to judge Redis' health.
    UserSpec("watchdog", ("watchdog:*", "hb:watchdog", *_BACKOFF, *_SERVICE_KEYS), only=(("halt", "+set"),),
             rq=True, commands="+info +time"),
    # the notifier records a delivered Telegram message under its job (notifications:telegram:sent:<job>)
    UserSpec("notifier", ("hb:notifier", "notifications:*"), rq=True),
    # The paper exchange publishes the replay's market clock and counts the user-data events it sends.
    UserSpec("paper_exchange", ("clock", "lockstep:ws_sent", "lockstep:ws", "lockstep:acked")),
)
OTHER_USERS: tuple[UserSpec, ...] = (
    UserSpec(OPERATOR, ("commands", "halt", "events", *_BACKOFF), rq=True, commands="+info"),
    # read-only: redis-cli inspection, the metrics and the dashboard (INFO: Redis' persistence and memory)
    UserSpec(VIEWER, commands="+info"),
)
USERS: tuple[UserSpec, ...] = (*SERVICE_USERS, *OTHER_USERS)
USER_NAMES: tuple[str, ...] = (*(u.name for u in USERS), ADMIN)
# executorctl runs as the operator; every service process as the user of its own name.
PROCESS_USER = {**{u.name: u.name for u in SERVICE_USERS}, "executorctl": OPERATOR, "metrics": VIEWER,
                "dashboard": VIEWER}


def _keys(prefix: str | tuple[str, ...], names: tuple[str, ...], mode: str = "") -> str:
    prefixes = (prefix,) if isinstance(prefix, str) else prefix
    return " ".join(f"{mode}~{p}{n}" for p in prefixes for n in names)


def user_rules(spec: UserSpec, prefix: str | tuple[str, ...]) -> list[str]:
    """The ACL rules (tokens, without `on` and the password) of `spec` for an EXEC_PREFIX (or several: a shared
    test server); a selector `(keys commands)` is one token."""
    rules = f"resetkeys resetchannels {_READ} {_NEVER} {_keys(prefix, ('*',), '%R')}"
    if spec.writes:
        # `~` (read and write): a command like INCR needs both from the same pattern
        rules += f" {_WRITE} {_NEVER} {_keys(prefix, spec.writes)}"
    if spec.rq:
        # rq names its keys rq:job:<id>, rq:queue:<name>, rq:queues ... and its worker's pubsub channel rq:pubsub:*
        rules += f" {_WRITE} +@pubsub {_NEVER} ~rq:* &rq:*"
    rules += f" {spec.commands}" if spec.commands else ""
    selectors = [f"({_keys(prefix, spec.groups)} {_GROUPS})"] if spec.groups else []
    selectors += [f"({_keys(prefix, (key,))} {cmds})" for key, cmds in spec.only]
    return rules.split() + selectors


def admin_rules() -> list[str]:
    """The admin user: everything (FLUSHALL, CONFIG, ACL, other prefixes)."""
    return ["~*", "&*", "+@all"]


def default_rules() -> list[str]:
    """The `default` user (what an unauthenticated client is): on, all rights, but a random password nobody is
    given, so a client without credentials gets NOAUTH. Not `off`: Redis (7.0 to 7.2) replays an AOF's MULTI/EXEC
    as `default` and re-checks its ACL at EXEC, so with `default off` every transaction in the AOF is dropped on
    restart (redis/redis#14541, fixed by #14545)."""
    return ["on", password_hash(secrets.token_urlsafe(32)), "~*", "&*", "+@all"]


def password_hash(password: str) -> str:
    """The form Redis stores in an aclfile (`#<sha256 hex>`): the file never holds a password."""
    return "#" + hashlib.sha256(password.encode()).hexdigest()


def acl_lines(prefix: str | tuple[str, ...], passwords: dict[str, str]) -> list[str]:
    """aclfile lines: `default` locked (unauthenticated clients get NOAUTH), each user with its rules."""
    lines = [" ".join(["user", "default", *default_rules()])]
    for spec in USERS:
        lines.append(" ".join(["user", spec.name, "on", password_hash(passwords[spec.name]), *user_rules(spec, prefix)]))
    lines.append(" ".join(["user", ADMIN, "on", password_hash(passwords[ADMIN]), *admin_rules()]))
    return lines


def apply(admin: Any, prefix: str | tuple[str, ...], passwords: dict[str, str]) -> None:
    """Set every user on a running server through an admin connection (replay, chaos, tests): the same rules as
    the aclfile, for `prefix`. `reset` first, so a user set for another prefix before loses those keys."""
    for spec in USERS:
        admin.execute_command("ACL", "SETUSER", spec.name, "reset", "on", password_hash(passwords[spec.name]),
                              *user_rules(spec, prefix))
    admin.execute_command("ACL", "SETUSER", "default", "reset", *default_rules())


def server_args(admin_password: str) -> list[str]:
    """redis-server arguments that start it closed: only `admin` (the caller then `apply`s the users)."""
    return ["--user", "default", *default_rules(), "--user", ADMIN, "on", password_hash(admin_password),
            *admin_rules()]
