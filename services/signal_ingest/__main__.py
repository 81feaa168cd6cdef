"""python -m services.signal_ingest"""
from __future__ import annotations

import sys

from services.signal_ingest.service import main

if __name__ == "__main__":
    sys.exit(main())
