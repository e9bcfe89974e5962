"""The analysis task: records -> tables, figures, ``summary.md`` and a TensorBoard summary.

``analyze(cfg)`` is a pure function of the config (``conf/analyze.yaml``); the
Hydra entry ``analyze.py`` only calls it. It reads the records, then runs
:func:`tfnas.analysis.sections.analyze_space` for each search space found,
writing into ``out_dir`` (or ``out_dir/<space>`` when the records hold
several spaces); that module lists the files written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

import tfnas.hydra_support  # noqa: F401  (registers the resolvers of conf/analyze.yaml, which _config resolves)
from tfnas.analysis.load import InputError, check_results_dirs, load_records
from tfnas.analysis.sections import analyze_space, prepare_space
from tfnas.paths import analysis_dir
from tfnas.schema import AnalyzeConfig, validate
from tfnas.search import report as search_report

#: Every key of ``conf/analyze.yaml`` with its default, for calls with a plain mapping.
DEFAULTS: dict[str, Any] = {
    "results_dir": None, "out_dir": None, "where": {}, "targets": None,
    "main": {"seed": None, "batch_index": None},
    "bootstrap": 1000, "ci": 0.95, "seed": 0,
    "top_fraction": 0.1, "search": search_report.DEFAULTS,
    "combine": None, "combine_sizes": [2, 3],
    "learned": {"enabled": True, "metrics": None, "ridge": 0.1, "top_m": 3, "min_coverage": 0.9, "references": None},
    "folds": 5, "tensorboard": True, "tensorboard_dir": None,
    "space_view": "auto", "benchmark_bert": None, "space": {"target": "glue", "min_gap": 2.0, "min_tau": 0.2, "min_archs": 20},
    "plots": {"formats": ["png", "pdf"], "dpi": 150, "log_ratio": 1000.0},
    "console_top": 8,
}


def _merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(base.get(k), dict) and isinstance(v, Mapping) else v
    return out


def _config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    composed = isinstance(cfg, DictConfig)
    if composed:
        validate(cfg, AnalyzeConfig)  # before resolving: a failing interpolation is named with its option
        cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg = {k: v for k, v in dict(cfg).items() if k != "hydra"}
    c = _merge(DEFAULTS, cfg)
    if not composed:  # a plain mapping (Python use): the same ranges and choices
        validate({k: v for k, v in c.items() if not (k == "out_dir" and v is None)}, AnalyzeConfig)
    if c["results_dir"] in (None, "", []):
        raise InputError("results_dir is not set: python analyze.py results_dir=DIR [out_dir=DIR]")
    if c["out_dir"] in (None, ""):
        c["out_dir"] = analysis_dir(c["results_dir"])
    return c


def check_inputs(cfg: DictConfig | Mapping[str, Any]) -> None:
    """Check the options and the results folders of an analysis before any work.

    ``analyze.py`` runs it before Hydra creates its run folder (``hydra.callbacks``
    in ``conf/analyze.yaml``, :class:`tfnas.hydra_support.CheckInputs`), so a
    wrong value or a missing or empty results folder leaves nothing behind
    (``<results_dir>/analysis/hydra`` included); :func:`analyze` repeats these checks.

    Args:
        cfg: the ``analyze`` config without its ``hydra`` node, or a plain mapping.

    Raises:
        ConfigError: a wrong option value (:func:`tfnas.schema.validate`).
        InputError: no results folder given, or no ``arch_*.json`` file below them.
        FileNotFoundError: a results folder does not exist.
    """
    check_results_dirs(_config(cfg)["results_dir"])


def analyze(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Analyse every record below ``results_dir``, one search space at a time.

    Args:
        cfg: the ``analyze`` config (DictConfig or plain mapping); see
            ``conf/analyze.yaml`` for every key.

    Returns:
        ``{space: result}`` with the result of
        :func:`~tfnas.analysis.sections.analyze_space` for each space.

    Raises:
        ConfigError: a wrong option value (:func:`tfnas.schema.validate`).
        InputError: no results folder given, no records, or a requested
            target that the records do not have.
        ConfigError: an option names a metric that the records do not have
            (:func:`tfnas.analysis.sections.check_metric_options`), before anything is written.
        FileNotFoundError: a results folder does not exist.
    """
    c = _config(cfg)
    records = load_records(c["results_dir"], where=c["where"])
    out_root = Path(c["out_dir"])
    spaces = records.spaces()
    # Every space is prepared (targets and metric names checked) before anything is written.
    prepared = {space: prepare_space(records, space, c, out_root if len(spaces) == 1 else out_root / space)
                for space in spaces}
    out_root.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    for space, a in prepared.items():
        a.outputs.out.mkdir(parents=True, exist_ok=True)
        result[space] = analyze_space(records, space, c, a.outputs.out, prepared=a)
    print("\n\n".join(r["console"] for r in result.values()), flush=True)
    return result
