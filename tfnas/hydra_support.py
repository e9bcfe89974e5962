"""Hydra glue: config resolvers and the end-of-sweep callback.

Importing this module registers the ``tfnas_job`` resolver used by the
configs to name each multirun job's folder by architecture (``arch_12``) or
shard (``shard_3``) instead of Hydra's job number.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("tfnas")


def job_name(shard: Any, arch: Any) -> str:
    """Folder name of one job: ``shard_<k>`` in shard mode, else ``arch_<i>``."""
    return f"shard_{shard}" if shard is not None else f"arch_{arch}"


if not OmegaConf.has_resolver("tfnas_job"):
    OmegaConf.register_new_resolver("tfnas_job", job_name)


class SweepSummary(Callback):
    """At the end of a multirun, collect every record of ``results_dir`` into one table.

    Writes ``{results_dir}/{space}/records.csv`` (one row per record: arch,
    benchmark id, status, error, ground truth and every score) and logs the
    totals. Records stay the source of truth; the table is rebuilt each time.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from tfnas.collect import collect

        try:
            collect(config.results_dir)
        except Exception as exc:  # the sweep's records are safe; a table failure must not look like a sweep failure
            log.error(f"could not write the combined table: {type(exc).__name__}: {exc}")
