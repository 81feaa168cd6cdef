"""Whether Redis keeps what the product writes (issue 21): the watchdog alerts when Redis has neither AOF nor
RDB persistence.

Read from `INFO persistence` only: under the ACL a service user may not run CONFIG GET, so the `save` setting
itself cannot be seen. AOF on is `aof_enabled:1`. RDB counts as on when it is doing its job: no unsaved change is
older than the longest save interval of Redis' default `save 3600 1 300 100 60 10000` (plus a grace for the
save itself), i.e. `rdb_changes_since_last_save` is 0 or `rdb_last_save_time` is younger than RDB_MAX_GAP_SEC.
A Redis with `save ""` and no AOF is therefore reported once it has held unsaved changes that long; a broken
save is reported by check_redis_persistence (rdb_last_bgsave_status)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.domain.invariants import Finding

RDB_MAX_GAP_SEC = 3600 + 300


def check_redis_durability(info: Mapping[str, Any], server_now: float) -> list[Finding]:
    """A WARN finding when, by INFO persistence at the server's time `server_now`, Redis has no AOF and changes
    that no RDB save has written for more than RDB_MAX_GAP_SEC."""
    if str(info.get("aof_enabled", 0)) == "1":
        return []
    changes = int(info.get("rdb_changes_since_last_save", 0) or 0)
    age = server_now - float(info.get("rdb_last_save_time", server_now) or server_now)
    if changes == 0 or age <= RDB_MAX_GAP_SEC:
        return []
    return [Finding(check="REDIS", severity="WARN", subject="persistence",
                    message=f"Redis has no persistence: AOF off and {changes} changes unsaved for {age:.0f}s "
                            f"(no RDB save within {RDB_MAX_GAP_SEC}s); a restart loses the state (only the "
                            f"snapshot file is left). Turn on appendonly yes (compose and scripts do)",
                    details={"aof_enabled": 0, "rdb_changes_since_last_save": changes,
                             "rdb_last_save_age_sec": round(age)})]
