"""The stack's credentials on disk and how each process gets only its own.

`{EXEC_SECRETS_DIR}/redis/<user>` holds one Redis user's password (directory 700, files 600, generated once by
`make setup`; var/ is git- and docker-ignored). A process whose REDIS_URL carries no credentials reads the file
of its own user only (`redis_url_for`). Binance keys never sit in supervisord's environment: scripts/up.sh (and
the demo) move them to BINANCE_SECRETS_FILE (600) and only the processes that sign read it (`process_env`).

    python -m shared.adapters.credentials init [--dir D]            create missing passwords (never rotates)
    python -m shared.adapters.credentials aclfile --prefix P --out F  the Redis aclfile for prefix P (hashes only)
    python -m shared.adapters.credentials url USER                  REDIS_URL with USER's password (for a shell)
    python -m shared.adapters.credentials supervisord               start the local stack (scripts/up.sh)
    python -m shared.adapters.credentials compose-env --out D       one env file per compose service (600) + aclfile
"""
from __future__ import annotations

import argparse
import os
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import redis

from shared.adapters import redis_acl

HOME = Path(__file__).resolve().parents[2]
# Who signs Binance requests (and so may hold the keys); the paper exchange verifies them with its own copy.
# metrics and dashboard read the exchange's open orders and book (signed, read-only calls: a read-only key is enough).
SIGNERS = ("position_engine", "exit_manager", "user_stream", "watchdog", "executorctl", "metrics", "dashboard")
_BINANCE = ("BINANCE_API_KEY", "BINANCE_API_SECRET", "BINANCE_PRIVATE_KEY_PASSPHRASE")
SECRET_VARS = {
    **{p: _BINANCE for p in SIGNERS},
    "paper_exchange": ("PAPER_API_KEY", "PAPER_API_SECRET"),
    "notifier": ("N8N_BASIC_AUTH_PASSWORD", "TELEGRAM_BOT_TOKEN"),
}
SECRET_VARS["dashboard"] = (*_BINANCE, "DASHBOARD_TOKEN")
STASHED = (*_BINANCE, "PAPER_API_KEY", "PAPER_API_SECRET", "N8N_BASIC_AUTH_PASSWORD", "TELEGRAM_BOT_TOKEN",
           "DASHBOARD_TOKEN")
# Environment variables that carry a password in a URL (scripts/env.sh exports them for the operator's shell).
SHELL_URLS = ("REDIS_VIEWER_URL", "REDIS_OPERATOR_URL", "REDIS_ADMIN_URL")


class CredentialsError(RuntimeError):
    """A credential the process needs is missing or unreadable (the message names the file, never a secret)."""


def secrets_dir(env: Mapping[str, str]) -> Path:
    """EXEC_SECRETS_DIR, default var/secrets of the checkout."""
    return Path(env.get("EXEC_SECRETS_DIR") or HOME / "var" / "secrets")


def init(directory: Path) -> dict[str, str]:
    """Create the passwords that are missing (random, 600) and return all of them; existing ones are kept."""
    d = directory / "redis"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    os.chmod(d, 0o700)
    for user in redis_acl.USER_NAMES:
        f = d / user
        if not f.exists():
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))
    return load_all(directory)


def write_aclfile(directory: Path, prefix: str, out: Path) -> dict[str, str]:
    """The Redis aclfile for `prefix` from the passwords under `directory` (created when missing); returns the
    passwords. The file holds hashes only (redis-server must read it: 644)."""
    pw = init(directory)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(redis_acl.acl_lines(prefix, pw)) + "\n")
    os.chmod(out, 0o644)
    return pw


def private_stack(run_dir: Path, prefix: str) -> tuple[list[str], dict[str, str]]:
    """Credentials of a stack of its own (replay, chaos, bench): passwords in run_dir/secrets (EXEC_SECRETS_DIR of
    its processes), the aclfile in run_dir/redis. Returns the redis-server arguments and the passwords."""
    acl = run_dir / "redis" / "users.acl"
    pw = write_aclfile(run_dir / "secrets", prefix, acl)
    return ["--aclfile", str(acl)], pw


def password(directory: Path, user: str) -> str:
    """One user's password, read from its own file."""
    f = directory / "redis" / user
    try:
        return f.read_text().strip()
    except OSError as e:
        raise CredentialsError(f"Redis credentials of user {user!r} not readable at {f} ({e.strerror}); "
                               f"run `make setup` (or set EXEC_SECRETS_DIR)") from None


def load_all(directory: Path) -> dict[str, str]:
    """Every user's password (for whoever writes the aclfile or sets the users)."""
    return {u: password(directory, u) for u in redis_acl.USER_NAMES}


def with_user(url: str, user: str, pw: str) -> str:
    """`url` with `user:pw@` (any credentials it had replaced)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(pw, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_user(url: str) -> str:
    """The user named in a Redis URL ("" without one)."""
    return unquote(urlsplit(url).username or "")


def redis_url_for(user: str, env: Mapping[str, str], var: str = "REDIS_URL") -> str:
    """The Redis URL `user` connects with: `env[var]` as it is when it carries credentials (tests), else with
    REDIS_USERNAME/REDIS_PASSWORD (compose), else with the password file of `user` under EXEC_SECRETS_DIR;
    without that directory, unchanged."""
    url = env.get(var, "")
    if not url or urlsplit(url).password:
        return url
    if env.get("REDIS_PASSWORD"):  # compose: the container's own env_file
        return with_user(url, env.get("REDIS_USERNAME") or user, env["REDIS_PASSWORD"])
    d = secrets_dir(env)
    if not (d / "redis").is_dir():
        return url
    return with_user(url, user, password(d, user))


def connect(user: str, env: Mapping[str, str] | None = None, **kwargs: Any) -> redis.Redis:
    """A Redis connection as `user` (e.g. `viewer` for a read-only dashboard) to the stack of `env` (default
    os.environ): REDIS_URL with that user's credentials (redis_url_for)."""
    return redis.Redis.from_url(redis_url_for(user, os.environ if env is None else env), **kwargs)


def read_env_file(path: str) -> dict[str, str]:
    """KEY=value lines written by `stash` (values shell-quoted)."""
    out: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise CredentialsError(f"BINANCE_SECRETS_FILE={path!r} not readable ({e.strerror})") from None
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            parsed = shlex.split(v)
            out[k.strip()] = parsed[0] if parsed else ""
    return out


def process_env(process: str, env: Mapping[str, str], var: str = "REDIS_URL") -> dict[str, str]:
    """The settings `process` runs with: its own Redis user's URL in `var`, and the secrets it needs from
    BINANCE_SECRETS_FILE (signers: the Binance keys; paper exchange: its keys; notifier: the webhook password)."""
    out = dict(env)
    user = redis_acl.PROCESS_USER.get(process, process)
    if env.get(var):
        out[var] = redis_url_for(user, env, var)
    path = env.get("BINANCE_SECRETS_FILE", "")
    if path and process in SECRET_VARS:
        stashed = read_env_file(path)
        for k in SECRET_VARS[process]:
            if k in stashed and not env.get(k):
                out[k] = stashed[k]
    return out


def stash(env: Mapping[str, str], out: Path) -> list[str]:
    """Write the secrets of `env` to `out` (600) for the processes that need them; return the names to unset
    before supervisord starts (so no child inherits them)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(out.parent, 0o700)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for k in STASHED:
            if k in env:
                fh.write(f"{k}={shlex.quote(env[k])}\n")
    return [k for k in (*STASHED, *SHELL_URLS) if k in env]


def supervisor_env(env: Mapping[str, str], run_dir: Path) -> dict[str, str]:
    """The environment to start supervisord with: the secrets stashed in run_dir/secrets/stack.env."""
    f = run_dir / "secrets" / "stack.env"
    drop = set(stash(env, f))
    return {**{k: v for k, v in env.items() if k not in drop}, "BINANCE_SECRETS_FILE": str(f)}


def supervisord_launch(env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """How to start the local stack (scripts/up.sh, the demo): the aclfile for EXEC_PREFIX written to
    EXEC_RUN_DIR/redis/users.acl, and supervisord's command and environment (no secret in it)."""
    run_dir = Path(env["EXEC_RUN_DIR"])
    write_aclfile(secrets_dir(env), env.get("EXEC_PREFIX", "exec:"), run_dir / "redis" / "users.acl")
    argv = [str(HOME / ".venv" / "bin" / "supervisord"), "-c", str(HOME / "supervisord.conf")]
    return argv, supervisor_env(env, run_dir)


def compose_env(directory: Path, out_dir: Path, prefix: str = "exec:") -> None:
    """For docker-compose.yml: one env file per service with its own REDIS_USERNAME/REDIS_PASSWORD (600; compose
    hands each container only its own, `env_file`), and the aclfile the redis service mounts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    pw = write_aclfile(directory, prefix, out_dir / "users.acl")
    for user in (*(u.name for u in redis_acl.SERVICE_USERS), redis_acl.VIEWER):
        f = out_dir / f"{user}.env"
        fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"REDIS_USERNAME={user}\nREDIS_PASSWORD={pw[user]}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m shared.adapters.credentials")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("init", "aclfile", "url", "supervisord", "compose-env"):
        sp = sub.add_parser(name)
        sp.add_argument("--dir", default=str(secrets_dir(os.environ)))
        if name == "aclfile":
            sp.add_argument("--prefix", default=os.environ.get("EXEC_PREFIX", "exec:"))
            sp.add_argument("--out", required=True)
        if name == "url":
            sp.add_argument("user", choices=redis_acl.USER_NAMES)
        if name == "compose-env":
            sp.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    d = Path(args.dir)
    if args.cmd == "init":
        init(d)
    elif args.cmd == "aclfile":
        write_aclfile(d, args.prefix, Path(args.out))
    elif args.cmd == "url":
        print(with_user(os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0"), args.user, password(d, args.user)))
    elif args.cmd == "supervisord":
        argv, env = supervisord_launch(os.environ)
        os.execve(argv[0], argv, env)
    else:
        compose_env(d, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
