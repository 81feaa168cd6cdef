"""watchdog: checks invariants I1..I13, heartbeats and Redis health; alerts; sets the halt flag only for I13."""
