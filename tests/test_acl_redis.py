"""The attacker at the door: a real redis-server started with the product's own aclfile (what scripts/up.sh, compose,
replay and chaos start), and every kind of client trying what it must not, then doing what it must.

An unauthenticated client gets NOAUTH; the `viewer` reads and writes nothing; each service's user writes only its
own keys (no `commands`, no `signals` but ingest's, no `halt` but the engine's and the watchdog's SET, no
`backoff` but the signers'), reads no other prefix and runs no admin command; the `operator` writes commands and
the halt flag; the README's redis-cli lines run as written for the viewer."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import redis

from shared.adapters import credentials, redis_acl
from tests.redis_helpers import redis_server

HOME = Path(__file__).resolve().parents[1]
P = "exec:"
SERVICES = [u.name for u in redis_acl.SERVICE_USERS]
SIGNERS = ("position_engine", "exit_manager", "user_stream", "watchdog")


class Door:
    """The server and a way to connect as anyone."""

    def __init__(self, url: str, passwords: dict[str, str]) -> None:
        self.url, self.passwords = url, passwords

    def as_user(self, user: str) -> redis.Redis:
        return redis.Redis.from_url(self.user_url(user))

    def user_url(self, user: str) -> str:
        return credentials.with_user(self.url, user, self.passwords[user])


@pytest.fixture(scope="module")
def door(tmp_path_factory) -> Iterator[Door]:
    d = tmp_path_factory.mktemp("door")
    pw = credentials.write_aclfile(d / "secrets", P, d / "users.acl")
    with redis_server(aclfile=str(d / "users.acl")) as url:
        yield Door(url, pw)


@pytest.fixture()
def admin(door: Door) -> Iterator[redis.Redis]:
    conn = door.as_user(redis_acl.ADMIN)
    conn.flushall()
    conn.xadd(P + "signals", {"type": "signal", "data": b"{}"})
    conn.xadd(P + "commands", {"type": "command", "data": b"{}"})
    conn.set(P + "halt", b'{"by":"operator"}')
    conn.set("other:state", b"{}")
    yield conn
    conn.close()


def refused(conn: redis.Redis, *cmd: object) -> str:
    """Run `cmd`; it must be refused by the ACL (NOPERM). Returns the error text."""
    with pytest.raises(redis.exceptions.NoPermissionError) as e:
        conn.execute_command(*cmd)
    return str(e.value)


def not_allowed(admin: redis.Redis, user: str, *cmd: str) -> str:
    """ACL DRYRUN: the server refuses DEBUG to every connection before the ACL is asked, so ask the ACL itself."""
    answer = admin.execute_command("ACL", "DRYRUN", user, *cmd)
    return "" if answer in (b"OK", "OK") else answer.decode()


def redis_cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["redis-cli", "-u", url, "--no-auth-warning", *args], capture_output=True, text=True,
                          timeout=10)


def test_unauthenticated_client_gets_noauth_for_everything(door: Door, admin: redis.Redis) -> None:
    for cmd in (["XADD", P + "commands", "*", "type", "command"], ["DEL", P + "halt"], ["GET", P + "state"],
                ["FLUSHALL"], ["CONFIG", "SET", "appendonly", "no"], ["KEYS", "*"]):
        out = redis_cli(door.url, *cmd)
        assert "NOAUTH" in out.stdout + out.stderr, (cmd, out)
    assert admin.exists(P + "halt") and admin.xlen(P + "commands") == 1


def test_viewer_reads_the_prefix_and_writes_nothing(door: Door, admin: redis.Redis) -> None:
    v = door.as_user(redis_acl.VIEWER)
    assert v.xrange(P + "signals") and v.xrevrange(P + "commands", count=1) and v.xlen(P + "signals") == 1
    assert v.get(P + "halt") == b'{"by":"operator"}' and v.ttl(P + "halt") == -1 and v.exists(P + "halt")
    assert v.type(P + "halt") == b"string" and v.xinfo_stream(P + "signals")["length"] == 1
    assert sorted(v.scan_iter(match=P + "*")) == [P.encode() + k for k in (b"commands", b"halt", b"signals")]
    assert v.execute_command("ACL", "WHOAMI") == b"viewer"
    refused(v, "XADD", P + "commands", "*", "type", "command")
    refused(v, "XADD", P + "signals", "*", "type", "signal")
    refused(v, "DEL", P + "halt")
    refused(v, "SET", P + "backoff", "9999999999999")
    refused(v, "HSET", P + "ingest:offset", "offset", "0")
    refused(v, "GET", "other:state")
    for cmd in (["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "SET", "dir", "/tmp"], ["KEYS", "*"],
                ["ACL", "SETUSER", "viewer", "+@all"], ["MODULE", "LIST"], ["SHUTDOWN"]):
        refused(v, *cmd)
    assert not_allowed(admin, "viewer", "DEBUG", "SLEEP", "0")
    assert admin.exists(P + "halt") and admin.xlen(P + "commands") == 1


@pytest.mark.parametrize("user", SERVICES)
def test_each_service_user_cannot_command_unhalt_read_elsewhere_or_administer(door: Door, admin: redis.Redis,
                                                                              user: str) -> None:
    c = door.as_user(user)
    refused(c, "XADD", P + "commands", "*", "type", "command", "data", '{"cmd":"flatten"}')
    if user != "position_engine":  # the engine applies the operator's halt/resume commands to the flag
        refused(c, "DEL", P + "halt")
    refused(c, "GET", "other:state")
    refused(c, "SET", "other:halt", "1")
    for cmd in (["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "SET", "appendonly", "no"], ["CONFIG", "GET", "*"],
                ["KEYS", "*"], ["MODULE", "LIST"], ["ACL", "LIST"], ["SHUTDOWN"]):
        refused(c, *cmd)
    assert not_allowed(admin, user, "DEBUG", "SLEEP", "0")
    if user != "signal_ingest":
        refused(c, "XADD", P + "signals", "*", "type", "signal", "data", "{}")
    if user not in SIGNERS:
        refused(c, "SET", P + "backoff", "9999999999999")
    if user not in ("position_engine", "exit_manager"):
        refused(c, "SET", P + "state", "{}")
    assert c.execute_command("ACL", "WHOAMI") == user.encode()
    assert admin.exists(P + "halt") and admin.xlen(P + "commands") == 1 and admin.get("other:state") == b"{}"


def test_each_service_does_what_it_must(door: Door, admin: redis.Redis) -> None:
    si = door.as_user("signal_ingest")
    si.xadd(P + "signals", {"type": "signal"})
    si.xadd(P + "rejects", {"type": "reject"})
    si.incr(P + "ingest:epoch")
    si.hset(P + "ingest:offset", "offset", 0)
    si.set(P + "hb:signal_ingest", b"{}", ex=5)
    refused(si, "SET", P + "hb:position_engine", "{}")  # no heartbeat of another process
    pe = door.as_user("position_engine")
    pe.xgroup_create(P + "commands", "position_engine", id="0", mkstream=True)
    assert pe.xreadgroup("position_engine", "position_engine", {P + "commands": ">"})
    pe.xack(P + "commands", "position_engine", admin.xrange(P + "commands")[0][0])
    pe.set(P + "state", b"{}")
    pe.delete(P + "halt")  # the halt/resume commands are applied by the engine
    pe.set(P + "backoff", b"0")
    wd = door.as_user("watchdog")
    assert wd.set(P + "halt", b'{"by":"watchdog"}', nx=True)  # I13: SET NX only
    refused(wd, "DEL", P + "halt")
    wd.info("persistence")
    us = door.as_user("user_stream")
    us.xadd(P + "orders", {"type": "order"})
    us.hset(P + "user_stream:orders", "1", b"{}")
    pa = door.as_user("paper_exchange")
    pa.set(P + "clock", 1)
    pa.incrby(P + "lockstep:ws_sent", 1)
    refused(pa, "XADD", P + "orders", "*", "type", "order")


def test_operator_writes_commands_and_the_halt_flag_only(door: Door, admin: redis.Redis) -> None:
    op = door.as_user(redis_acl.OPERATOR)
    op.xadd(P + "commands", {"type": "command", "data": b'{"cmd":"halt"}'})
    op.set(P + "halt", b'{"by":"operator"}')
    op.delete(P + "halt")
    assert op.execute_command("ACL", "WHOAMI") == b"operator"
    refused(op, "XADD", P + "signals", "*", "type", "signal")
    refused(op, "SET", P + "state", "{}")
    refused(op, "FLUSHALL")
    refused(op, "CONFIG", "SET", "appendonly", "no")
    refused(op, "GET", "other:state")
    assert admin.xlen(P + "commands") == 2


def test_admin_alone_may_flush_and_configure(door: Door, admin: redis.Redis) -> None:
    assert admin.config_get("appendonly") and admin.execute_command("ACL", "WHOAMI") == b"admin"
    admin.flushall()
    assert admin.dbsize() == 0


def _readme_lines(var: str) -> list[str]:
    text = (HOME / "README.md").read_text()
    return [ln.split(" #")[0].strip() for ln in text.splitlines() if ln.startswith(f'redis-cli -u "${var}"')]


def test_the_readme_redis_cli_lines_work_as_written(door: Door, admin: redis.Redis) -> None:
    """Each README line runs as written (through bash, with REDIS_VIEWER_URL / REDIS_OPERATOR_URL exported as
    scripts/env.sh does) and is answered, not refused."""
    admin.set(P + "state", b'{"version":1}')
    admin.xgroup_create(P + "signals", "position_engine", id="0")
    admin.set(P + "hb:signal_ingest", b"{}")
    env = {**os.environ, "REDIS_VIEWER_URL": door.user_url("viewer"),
           "REDIS_OPERATOR_URL": door.user_url("operator")}
    viewer, operator = _readme_lines("REDIS_VIEWER_URL"), _readme_lines("REDIS_OPERATOR_URL")
    assert len(viewer) >= 8 and len(operator) >= 2
    for line in viewer + operator:
        out = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env,
                             timeout=10)
        assert out.returncode == 0 and not re.search(r"NOPERM|NOAUTH|ERR", out.stdout + out.stderr), (line, out)
    assert admin.xlen(P + "commands") == 1 + len(operator)
    # and the viewer's URL cannot write, even through the same tool
    out = redis_cli(door.user_url("viewer"), "XADD", P + "commands", "*", "type", "command")
    assert "NOPERM" in out.stdout + out.stderr


def test_transactions_survive_a_restart_from_the_aof(tmp_path: Path) -> None:
    """Redis replays an AOF's MULTI/EXEC as the `default` user: with the product's ACL a restarted Redis still
    has what the services wrote in transactions (the state store's, ingest's)."""
    pw = credentials.write_aclfile(tmp_path / "secrets", P, tmp_path / "users.acl")
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    port = None
    with redis_server(aclfile=str(tmp_path / "users.acl"), extra_args=(*aof, "--dir", str(tmp_path))) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        pe = redis.Redis.from_url(credentials.with_user(url, "position_engine", pw["position_engine"]))
        with pe.pipeline(transaction=True) as pipe:
            pipe.set(P + "state", b'{"version":7}')
            pipe.xadd(P + "positions", {"type": "position"})
            pipe.execute()
        pe.close()
    with redis_server(port=port, aclfile=str(tmp_path / "users.acl"), extra_args=(*aof, "--dir", str(tmp_path))) as url:
        v = redis.Redis.from_url(credentials.with_user(url, "viewer", pw["viewer"]))
        assert v.get(P + "state") == b'{"version":7}' and v.xlen(P + "positions") == 1
        v.close()
