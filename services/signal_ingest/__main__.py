"""python -m services.signal_ingest"""
from __future__ import annotations

import sys

from shared.config import ConfigError, load_config
from shared.jsonlog import JsonLogger


def _main() -> int:
    try:
        cfg = load_config()
    except ConfigError as e:
        JsonLogger("signal_ingest").error("config_error", error=str(e))
        return 2
    from services.signal_ingest.service import main
    return main(cfg)


if __name__ == "__main__":
    sys.exit(_main())
