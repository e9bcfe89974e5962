"""Collect per-architecture records into one table per space (end of a sweep).

The ``SweepSummary`` Hydra callback calls :func:`collect` when a multirun
ends. When the launching command did not live to the end of the sweep (a
SLURM array left running after logging out, a killed sweep), rebuild the
table by hand::

    python -m tfnas.collect results/
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tfnas.collect RESULTS_DIR...``: write each folder's ``records.csv`` tables.

    Returns:
        0, or 1 when a folder holds no record.
    """
    ap = argparse.ArgumentParser(prog="python -m tfnas.collect", description=main.__doc__)
    ap.add_argument("results_dirs", nargs="+", help="folders holding arch_*.json records (any depth)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    status = 0
    for d in args.results_dirs:
        if not collect(d):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
