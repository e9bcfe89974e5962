"""The NAS-Bench-NLP benchmark reader: training logs (zip, folder) or recipe lists, by index.

:func:`read_benchmark` turns the benchmark's ``log_stats_model_*.json`` files
into :class:`~tfnas.spaces.base.Architecture` entries (recipe, ground truth,
hyperparameters). Its conventions (order, failed runs, duplicate ids,
repeated recipes, invalid recipes) are in ``docs/BENCHMARK_NOTES.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from tfnas.paths import default_data_dir
from tfnas.spaces.base import Architecture
from tfnas.spaces.nasbench_nlp.recipe import InvalidRecipe, Recipe, RecipeError, UnusedNodeWarning

#: Recipe ids of the benchmark's hand-made cells: vanilla RNN, LSTM, GRU.
HANDMADE_RECIPE_IDS = ("1000000", "1000001", "1000002")
_LOG_RE = re.compile(r"log_stats_model_(\d+)_(.+)_(\d+)\.json")
#: Keys of a log that hold per-epoch curves or the recipe, not hyperparameters.
_NON_META_KEYS = ("recepie", "train_losses", "val_losses", "test_losses", "wall_times")
_REQUIRED_LOG_KEYS = ("recepie", "recepie_id", "test_losses", "val_losses", "status")

def default_benchmark_path() -> Path:
    """``<data_dir>/nasbench_nlp/train_logs_wikitext-2.zip``."""
    return default_data_dir() / "nasbench_nlp" / "train_logs_wikitext-2.zip"


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _last(seq: Any, what: str, where: str) -> float:
    if not isinstance(seq, list):
        raise ValueError(f"{where}: {what!r} must be a list of per-epoch losses, got {type(seq).__name__}")
    return _float(seq[-1]) if seq else math.nan


def parse_log(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Turn one parsed ``log_stats_model_*.json`` object into reader fields.

    Args:
        data: the JSON object of the log.
        where: the file's name, used in error messages.

    Returns:
        ``{"recipe_id": int, "experiment_id": int | None, "spec": Recipe,
        "truth": {...}, "meta": {...}}`` (see :func:`read_benchmark`).

    Raises:
        ValueError: a missing key or an invalid recipe, naming ``where``.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: a log must be a JSON object, got {type(data).__name__}")
    missing = [k for k in _REQUIRED_LOG_KEYS if k not in data]
    if missing:
        raise ValueError(f"{where}: not a NAS-Bench-NLP log, missing key(s) {missing}")
    try:
        recipe_id = int(data["recepie_id"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: recepie_id must be an integer, got {data['recepie_id']!r}") from None
    raw = data["recepie"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnusedNodeWarning)  # reported through Recipe.unused instead
            spec = Recipe.from_json(raw) if isinstance(raw, str) else Recipe(raw)
    except RecipeError as e:
        # One bad architecture must not make a whole benchmark unreadable: the
        # entry is kept with its error, which building it raises (and a sweep records).
        spec = InvalidRecipe(f"{where}: invalid recipe (recipe id {recipe_id}): {e}")
    status = str(data["status"])
    test_loss = _last(data["test_losses"], "test_losses", where)
    val_loss = _last(data["val_losses"], "val_losses", where)
    failed = status != "OK" or not math.isfinite(test_loss)
    if failed:
        test_loss = math.nan  # an unfinished run's last loss is not the 50-epoch ground truth
    test_ppl = math.nan if math.isnan(test_loss) else (math.exp(test_loss) if test_loss < 700 else math.inf)
    meta = {k: v for k, v in data.items() if k not in _NON_META_KEYS}
    meta["epochs_completed"] = len(data["test_losses"])
    meta["failed"] = failed
    wall = data.get("wall_times")
    if isinstance(wall, list):
        meta["wall_time_s"] = float(sum(_float(w) for w in wall))
    exp_id = data.get("experiment_id")
    try:
        exp_id = None if exp_id is None else int(exp_id)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: experiment_id must be an integer, got {exp_id!r}") from None
    return {
        "recipe_id": recipe_id,
        "experiment_id": exp_id,
        "spec": spec,
        "truth": {"test_loss": test_loss, "test_ppl": test_ppl, "val_loss": val_loss, "status": status},
        "meta": meta,
    }


def _entry_from_file(name: str, text: bytes | str, file_label: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{file_label}: not valid JSON ({e})") from e
    entry = parse_log(data, file_label)
    m = _LOG_RE.fullmatch(name)
    if m:
        file_recipe, file_exp = int(m.group(1)), int(m.group(3))
        if file_recipe != entry["recipe_id"]:
            raise ValueError(
                f"{file_label}: the file name says recipe {file_recipe} but the log says recepie_id {entry['recipe_id']}"
            )
        if entry["experiment_id"] is not None and entry["experiment_id"] != file_exp:
            raise ValueError(
                f"{file_label}: the file name says experiment {file_exp} but the log says {entry['experiment_id']}"
            )
        entry["experiment_id"] = file_exp
    entry["meta"]["experiment_id"] = entry["experiment_id"]
    entry["meta"]["file"] = file_label
    return entry


def _read_zip(path: Path) -> list[dict[str, Any]]:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        if _has_zip_magic(path):
            raise ValueError(f"{path}: truncated or corrupt zip archive (its end-of-archive directory is missing); "
                             "download it again") from None
        raise ValueError(f"{path}: not a zip archive") from None
    entries = []
    with zf:
        for info in zf.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if info.is_dir() or info.filename.startswith("__MACOSX/") or not _LOG_RE.fullmatch(base):
                continue
            label = f"{path}:{info.filename}"
            entries.append(_entry_from_file(base, _read_member(zf, info, path), label))
    if not entries:
        raise ValueError(f"{path}: the archive holds no log_stats_model_*.json file")
    return entries


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    """One member's bytes; a damaged member is one line naming the archive and the member."""
    try:
        return zf.read(info)
    except zipfile.BadZipFile as e:
        what = "fails its CRC check" if "CRC" in str(e) else f"is damaged ({e})"
        raise ValueError(f"{path}: member {info.filename} {what}; the archive is corrupt, download it again") from None
    except (zlib.error, EOFError) as e:
        raise ValueError(f"{path}: member {info.filename} cannot be decompressed ({e}); the archive is corrupt, "
                         "download it again") from None


def _has_zip_magic(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _is_zip(path: Path) -> bool:
    """A zip by name or by content (a truncated zip starts like one but has no readable directory)."""
    return path.suffix.lower() == ".zip" or zipfile.is_zipfile(path) or _has_zip_magic(path)


def _read_dir(path: Path) -> list[dict[str, Any]]:
    files = sorted(p for p in path.rglob("log_stats_model_*.json") if p.is_file() and _LOG_RE.fullmatch(p.name))
    if not files:
        raise ValueError(f"{path}: the folder holds no log_stats_model_*.json file (searched recursively)")
    return [_entry_from_file(p.name, p.read_bytes(), str(p)) for p in files]


def _read_json(path: Path) -> list[dict[str, Any]]:
    """A JSON list of recipes (dicts or JSON strings), or a single log file."""
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if isinstance(data, Mapping):
        return [_entry_from_file(path.name, path.read_bytes(), str(path))]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of recipes or one log object, got {type(data).__name__}")
    entries = []
    for i, raw in enumerate(data):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnusedNodeWarning)
                spec = Recipe.from_json(raw) if isinstance(raw, str) else Recipe(raw)
        except RecipeError as e:
            spec = InvalidRecipe(f"{path}: recipe {i} is invalid: {e}")
        entries.append({"recipe_id": None, "experiment_id": None, "spec": spec, "truth": {},
                        "meta": {"position": i, "file": str(path)}})
    return entries


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> tuple[Architecture, ...]:
    p = Path(path)
    if p.is_dir():
        entries = _read_dir(p)
    elif _is_zip(p):
        entries = _read_zip(p)
    else:
        entries = _read_json(p)
    if entries and entries[0]["recipe_id"] is not None:
        entries.sort(key=lambda e: (e["recipe_id"], -1 if e["experiment_id"] is None else e["experiment_id"]))
    first_of_id: dict[int, int] = {}
    first_of_recipe: dict[Recipe, int] = {}
    archs = []
    for i, e in enumerate(entries):
        meta = e["meta"]
        rid = e["recipe_id"]
        if rid is not None:
            if rid in first_of_id:
                meta["duplicate_of"] = first_of_id[rid]
            else:
                first_of_id[rid] = i
                if e["spec"] in first_of_recipe:
                    meta["same_recipe_as"] = first_of_recipe[e["spec"]]
            first_of_recipe.setdefault(e["spec"], i)
        if e["spec"].unused:
            meta["unused_nodes"] = e["spec"].unused
        archs.append(Architecture(index=i, benchmark_id=None if rid is None else str(rid), spec=e["spec"],
                                  truth=e["truth"], meta=meta))
    return tuple(archs)


def copy_architecture(a: Architecture) -> Architecture:
    # The parsed benchmark is cached: hand out copies so callers cannot corrupt it.
    return dataclasses.replace(a, truth=dict(a.truth), meta=dict(a.meta))


def resolve_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists() and not p.is_absolute():
        alt = default_data_dir() / p
        if alt.exists():
            return alt.resolve()
    if not p.exists():
        where = "" if p.is_absolute() else f" (looked in {Path.cwd()} and {default_data_dir()})"
        raise FileNotFoundError(
            f"NAS-Bench-NLP benchmark not found: {p}{where}; set paths.data_dir or TFNAS_DATA_DIR to the folder "
            "that holds nasbench_nlp/ (the data README says where to download it)"
        )
    return p.resolve()


def read_benchmark(path: str | Path | None = None) -> list[Architecture]:
    """Read NAS-Bench-NLP training logs or a list of recipes (parsed once per file, then cached).

    Accepted inputs:

    (a) a zip of ``log_stats_model_<recipe id>_<date>_<experiment id>.json``
        files, at any depth inside the archive (e.g. the benchmark's
        ``train_logs_wikitext-2/logs.zip``, ``train_logs_single_run/logs.zip``);
    (b) a folder holding such files (searched recursively);
    (c) a JSON list of recipes (dicts or JSON strings), e.g.
        ``recepies_example.json``, or one log file.

    Entries of (a) and (b) are sorted by (recipe id, experiment id), so
    ``arch=i`` always names the same run; (c) keeps the file's order.
    Failed runs and duplicate recipe ids are kept (docs/BENCHMARK_NOTES.md).

    Args:
        path: the file or folder; a relative path that does not exist is
            also looked up in the data folder. Default: the WikiText-2 logs
            of the data folder.

    Returns:
        One :class:`Architecture` per log, with

        - ``benchmark_id``: the recipe id as a str (None for a recipe list);
        - ``spec``: the :class:`Recipe`, keys in file order;
        - ``truth``: ``test_loss`` (last ``test_losses`` entry, nats per
          token), ``test_ppl`` = exp(test_loss), ``val_loss`` (last
          ``val_losses`` entry), ``status`` (the log's); ``test_loss`` and
          ``test_ppl`` are NaN for a failed run; empty for a recipe list;
        - ``meta``: every hyperparameter of the log (``emsize``, ``nhid``,
          ``nlayers``, ``dropout``, ``dropouth``, ``dropouti``, ``dropoute``,
          ``wdrop``, ``bptt``, ``batch_size``, ``lr``, ``wdecay``, ``epochs``,
          ``clip``, ``alpha``, ``beta``, ``num_params``, ...), plus
          ``experiment_id`` (from the file name), ``file``, ``failed``,
          ``epochs_completed``, ``wall_time_s``, and where they apply
          ``duplicate_of``, ``same_recipe_as``, ``unused_nodes``. A recipe
          list gives ``{"position", "file"}``.

        The list and its Architecture objects are fresh copies on each call.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a malformed log or recipe (the message names the file),
            or an archive/folder without logs.
    """
    p = resolve_path(path if path is not None else default_benchmark_path())
    st = p.stat()
    return [copy_architecture(a) for a in _load(str(p), st.st_mtime_ns, st.st_size)]

