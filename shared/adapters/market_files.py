"""Locate market data: a real `*.aggregated.csv` in the shared data folder, else a generated synthetic file."""
from __future__ import annotations

import os
from pathlib import Path

from shared.domain.bars import AGG_HEADER_LINE, Bar, BadRow, check_header, format_row, parse_row
from shared.domain.synthetic_market import SYNTHETIC_LABEL, generate

SYNTHETIC_NAME = "synthetic-btcusdc-1m.aggregated.csv"


def find_market_file(data_dir: Path, fallback_dir: Path, n_bars: int = 20_000, seed: int = 7) -> tuple[Path, str]:
    """Return (path, label): the newest real file in `data_dir`, else a seeded synthetic one in `fallback_dir`."""
    real = sorted(data_dir.glob("*.aggregated.csv")) if data_dir.is_dir() else []
    if real:
        return real[-1], f"real market data: {real[-1].name}"
    path = fallback_dir / SYNTHETIC_NAME
    if not path.exists():
        write_bars(path, generate(n_bars, seed=seed))
    return path, SYNTHETIC_LABEL


def write_bars(path: Path, bars: list[Bar]) -> None:
    """Write a whole aggregated.csv atomically (temp file, fsync, replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(AGG_HEADER_LINE + "\n")
        for b in bars:
            f.write(format_row(b) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_bars(path: Path) -> tuple[list[Bar], list[tuple[int, str]]]:
    """Read a whole aggregated.csv: (bars, [(line_no, reason) of skipped bad rows]). Bad header raises."""
    bars: list[Bar] = []
    bad: list[tuple[int, str]] = []
    with open(path, encoding="utf-8") as f:
        check_header(f.readline())
        for n, line in enumerate(f, start=2):
            if not line.strip():
                continue
            try:
                bars.append(parse_row(line))
            except BadRow as e:
                bad.append((n, str(e)))
    return bars, bad
