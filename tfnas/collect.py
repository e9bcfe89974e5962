"""Collect per-architecture records into one table per space (end of a sweep)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from tfnas import results

log = logging.getLogger("tfnas")


def records_table(results_dir: str | Path) -> pd.DataFrame:
    """One row per record below ``results_dir``: identity, status, truth and scores.

    Columns: space, arch, benchmark_id, seed, config_hash, status, error,
    seconds, source, ``truth/<key>`` and ``score/<name>``. Files that are not
    records are skipped with a warning.
    """
    rows = []
    for path in results.iter_record_files(results_dir):
        try:
            rec = results.load(path)
        except ValueError as exc:
            log.warning(str(exc))
            continue
        row = {k: rec.get(k) for k in ("space", "arch", "benchmark_id", "seed", "config_hash", "status", "error", "seconds", "source")}
        row.update({f"truth/{k}": v for k, v in (rec.get("truth") or {}).items()})
        row.update({f"score/{k}": v for k, v in (rec.get("scores") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def collect(results_dir: str | Path) -> dict[str, Path]:
    """Write ``{results_dir}/{space}/records.csv`` for every space present; returns the paths."""
    table = records_table(results_dir)
    out = {}
    if table.empty:
        log.warning(f"no records under {results_dir}")
        return out
    for space, part in table.groupby("space"):
        path = Path(results_dir) / str(space) / "records.csv"
        tmp = path.with_suffix(".csv.tmp")
        part.sort_values(["arch", "config_hash"]).to_csv(tmp, index=False)
        tmp.replace(path)
        counts = part["status"].value_counts().to_dict()
        log.info(f"{space}: {len(part)} records ({counts}) -> {path}")
        out[str(space)] = path
    return out
