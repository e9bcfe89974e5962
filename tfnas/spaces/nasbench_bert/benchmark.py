"""The NAS-Bench-BERT benchmark reader: ``BERT_benchmark.json`` validated against the search space."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from tfnas.paths import default_data_dir
from tfnas.spaces.base import Architecture
from tfnas.spaces.nasbench_bert.definition import SpaceDefinition, as_int, load_search_space

#: The benchmark's per-task GLUE keys, in its order.
GLUE_TASK_KEYS = ("cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst", "sts")
#: Ground-truth keys of ``scores`` in the benchmark (GLUE dev, ×100; ``glue`` is their mean).
SCORE_KEYS = GLUE_TASK_KEYS + ("glue",)


def default_benchmark_path() -> Path:
    """``<data_dir>/nasbench_bert/BERT_benchmark.json``."""
    return default_data_dir() / "nasbench_bert" / "BERT_benchmark.json"


def definition_for(benchmark_path: Path, search_space: str | Path | None) -> SpaceDefinition:
    """``search_space`` if given, else the ``search_space.json`` beside the benchmark, else the data folder's."""
    if search_space is not None:
        return load_search_space(search_space)
    sibling = benchmark_path.with_name("search_space.json")
    return load_search_space(sibling if sibling.is_file() else None)


@lru_cache(maxsize=8)
def _load_benchmark(path: str, space_path: str | None) -> tuple[Architecture, ...]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"NAS-Bench-BERT benchmark file not found: {p}")
    space = definition_for(p, space_path)
    try:
        entries = json.loads(p.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not valid JSON ({e}); the file is truncated or corrupt") from None
    if not isinstance(entries, list):
        raise ValueError(f"{p}: expected a JSON list of architectures, got {type(entries).__name__}")
    archs = []
    for i, e in enumerate(entries):
        where = f"{p.name} entry {i}"
        if not isinstance(e, dict):
            raise ValueError(f"{where}: expected an object, got {type(e).__name__}")
        for key in ("id", "scores", "hparams"):
            if key not in e:
                raise ValueError(f"{where}: missing key {key!r}")
        if as_int(e["id"], f"{where}: id") != i:
            # The arch index is the position in the file; the benchmark numbers its entries 0..499 in order.
            raise ValueError(f"{where}: id is {e['id']!r} but its position is {i}; the file is reordered or corrupt")
        where = f"{p.name} entry {i} (id {e['id']})"
        overrides = (e["hparams"] or {}).get("model_hparam_overrides")
        if overrides is None:
            raise ValueError(f"{where}: missing hparams.model_hparam_overrides")
        spec = space.validate(overrides, where)
        scores = e["scores"]
        missing = [k for k in SCORE_KEYS if k not in scores]
        if missing:
            raise ValueError(f"{where}: scores lack {missing}")
        truth = {k: float(scores[k]) for k in SCORE_KEYS}
        meta = {"hparams": e["hparams"], "time_to_train": e.get("time_to_train")}
        archs.append(Architecture(index=i, benchmark_id=str(e["id"]), spec=spec, truth=truth, meta=meta))
    return tuple(archs)


def load_benchmark(path: str | Path | None = None, search_space: str | Path | None = None) -> list[Architecture]:
    """Read and validate ``BERT_benchmark.json`` (cached per path).

    Args:
        path: the benchmark file; defaults to ``<data_dir>/nasbench_bert/BERT_benchmark.json``.
        search_space: ``search_space.json`` to validate against; defaults to
            the one next to ``path``, else the data folder's.

    Returns:
        One :class:`Architecture` per entry, ``index`` = position in the file,
        ``benchmark_id = str(id)``, ``spec`` the normalised configuration,
        ``truth`` the GLUE dev scores (``cola mnli mrpc qnli qqp rte sst sts
        glue``, floats, ×100), ``meta`` = ``{"hparams", "time_to_train"}``.
        The Architecture objects are shared between calls: do not mutate them.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an entry whose ``id`` differs from its position, or whose
            configuration is outside the search space (the message names the
            entry and the field).
    """
    p = str(Path(path or default_benchmark_path()).resolve())
    s = None if search_space is None else str(Path(search_space).resolve())
    return list(_load_benchmark(p, s))

