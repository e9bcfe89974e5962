"""Result records: one JSON file per architecture and configuration.

Every scoring or training run writes exactly one record under ``results_dir``:

    {results_dir}/{space}/arch_{arch:06d}_{config_hash}.json

Files are written atomically (temporary file in the same folder, then
``os.replace``), so a killed job leaves either no record or a whole one, and
workers on a shared filesystem never need a database. A record that already
exists for the same architecture and configuration means the work is done:
that is how sweeps resume.

Records are strict JSON (RFC 8259), readable by any JSON reader (``jq``,
JavaScript's ``JSON.parse``, ...). JSON has no NaN or infinity, so a
non-finite float is written as one of the strings ``"NaN"``, ``"Infinity"``
and ``"-Infinity"`` (the convention of Protocol Buffers' JSON mapping), and
the record's ``reasons`` say why a score is not finite. :func:`load` and
:func:`read_json` turn those strings back into floats, and still read records
of version 1, which held bare ``NaN`` / ``Infinity`` tokens (a Python
extension of JSON).

Claims. Several processes may sweep into one folder at once (two identical
sweeps, a rerun started while the first still runs). While a process scores an
architecture it holds a *claim* on its record, :func:`claim`: the lock file
``arch_{arch:06d}_{config_hash}.claim`` beside the record, locked with
``flock`` through the ``filelock`` library and naming its holder (pid, host,
time). Another process that finds the claim held skips the architecture. The
kernel releases the lock when its process ends, however it ends (``kill -9``
included), so a claim file left behind by a killed job is stale: the next
process takes it over. On a network filesystem the lock needs the filesystem's
lock support (NFSv4, Lustre mounted with ``flock``).

Only this module writes records; only :mod:`tfnas.analysis` reads them in bulk.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import filelock

#: 2: non-finite floats as the strings of :data:`NON_FINITE` (strict JSON); 1: bare NaN / Infinity tokens.
RECORD_VERSION = 2
#: How each non-finite float is written in a record, and read back.
NON_FINITE: dict[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def config_hash(settings: dict[str, Any]) -> str:
    """Stable 12-hex-digit hash of the settings that change scores.

    Args:
        settings: JSON-serialisable dict (space, benchmark, arch, seed,
            batch_index, data, metrics, paper_compat, ...). Launcher, shard,
            thread and output-path settings must be left out by the caller.
    """
    blob = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass
class Record:
    """The result of scoring (and possibly training) one architecture.

    Attributes:
        space: search space name (``nasbench_nlp`` or ``nasbench_bert``).
        arch: index of the architecture in its space.
        benchmark_id: the benchmark's own id (recipe id, BERT id), as a string.
        seed: model construction seed.
        config_hash: :func:`config_hash` of the score-relevant settings.
        status: ``"ok"`` or ``"error"``.
        error: the error text when ``status == "error"``.
        scores: metric name -> value (NaN where undefined).
        reasons: metric name -> why its value is NaN or non-finite.
        truth: ground truth known for the architecture (benchmark or training),
            e.g. ``{"test_loss": 4.6, "test_ppl": 99.5, "status": "OK"}``.
        seconds: wall time spent on this architecture.
        source: ``"score"`` or ``"train"``.
        settings: the settings that were hashed.
        extra: free-form details (e.g. per-epoch losses, GLUE tasks run).
    """

    space: str
    arch: int
    benchmark_id: str | None
    seed: int
    config_hash: str
    status: str = "ok"
    error: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    truth: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    source: str = "score"
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = RECORD_VERSION

    def fail(self, exc: BaseException, keep_truth: bool = True) -> None:
        """Mark this record as failed by ``exc`` (call inside its ``except`` block).

        Sets ``status="error"``, ``error`` to "Type: message" and
        ``extra["traceback"]``; a train record passes ``keep_truth=False``, as a
        failed training has no ground truth.
        """
        self.status, self.error = "error", f"{type(exc).__name__}: {exc}"
        if not keep_truth:
            self.truth = {}
        self.extra["traceback"] = traceback.format_exc(limit=8)


def record_path(results_dir: str | os.PathLike, space: str, arch: int, chash: str) -> Path:
    """Where the record of ``arch`` under configuration ``chash`` lives."""
    return Path(results_dir) / space / f"arch_{arch:06d}_{chash}.json"


def _jsonable(x: Any) -> Any:
    """``x`` with numpy/torch scalars as Python numbers and non-finite floats as the strings of :data:`NON_FINITE`."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    return x


def _from_json(x: Any) -> Any:
    """The inverse of :func:`_jsonable` on parsed JSON: the strings of :data:`NON_FINITE` become floats."""
    if isinstance(x, dict):
        return {k: _from_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_from_json(v) for v in x]
    if isinstance(x, str):
        return NON_FINITE.get(x, x)
    return x


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process umask, read once at import (reading it means setting it briefly).
_UMASK = _current_umask()


def write_atomic(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as strict JSON to ``path`` atomically (non-finite floats as strings; see the module doc).

    Raises:
        OSError: the folder cannot be created or written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; records are shared like any written file
        with os.fdopen(fd, "w") as f:
            json.dump(_jsonable(payload), f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save(record: Record, results_dir: str | os.PathLike) -> Path:
    """Write ``record`` atomically under ``results_dir``; returns its path."""
    return write_atomic(record_path(results_dir, record.space, record.arch, record.config_hash), asdict(record))


def exists(results_dir: str | os.PathLike, space: str, arch: int, chash: str) -> bool:
    """Whether a complete, readable record is already there (resume check).

    A record file that does not parse (e.g. truncated by a disk error) counts
    as missing, so the architecture is scored again and the file replaced.
    """
    path = record_path(results_dir, space, arch, chash)
    if not path.is_file():
        return False
    try:
        load(path)
    except (ValueError, OSError, UnicodeDecodeError):
        return False
    return True


def iter_record_files(results_dir: str | os.PathLike) -> Iterator[Path]:
    """All record files below ``results_dir`` (any depth), sorted."""
    yield from sorted(Path(results_dir).rglob("arch_*.json"))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`write_atomic` (or a version-1 record): non-finite floats come back as floats.

    Raises:
        ValueError: the file is not valid JSON (names the file).
        OSError: the file cannot be read.
    """
    try:
        with open(path) as f:
            return _from_json(json.load(f))  # json.load also takes version 1's bare NaN / Infinity
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read one record (any version) as a dict, non-finite scores as float NaN / ±inf.

    Raises:
        ValueError: the file is not a tfnas record (names the file).
    """
    rec = read_json(path)
    if not isinstance(rec, dict) or "arch" not in rec or "space" not in rec:
        raise ValueError(f"{path}: not a tfnas result record")
    return rec


# ---------------------------------------------------------------------------- claims


def claim_path(path: str | os.PathLike) -> Path:
    """The claim (lock) file of the record at ``path``: ``arch_<i>_<hash>.claim`` beside it."""
    path = Path(path)
    return path.with_name(path.stem + ".claim")


@dataclass
class Claim:
    """The outcome of :func:`claim`.

    Attributes:
        held: True when this process holds the claim (the work is its own).
        holder: who holds it when ``held`` is False, as written in the claim
            file (``"pid 123 on host h since 2026-12-02T11:00:00Z"``), or
            ``"unknown"`` when the holder has not written it yet.
    """

    held: bool
    holder: str = ""


@contextmanager
def claim(path: str | os.PathLike) -> Iterator[Claim]:
    """Claim the record at ``path`` for this process while the ``with`` block runs (see the module docstring).

    Never waits: when another live process holds the claim, yields
    ``Claim(held=False, holder=...)`` at once and the caller skips the work.
    Otherwise takes the claim, a stale one left by a dead process included,
    writes this process's pid, host and time into the claim file, and yields
    ``Claim(held=True)``; on leaving the block the claim file is removed
    (still under the lock, so a process that opened it meanwhile cannot take
    it) and the lock released. A caller re-checks the record after taking the
    claim: its holder may have finished it just before.

    Raises:
        OSError: the record's folder cannot be created or the claim file not written.
    """
    cpath = claim_path(path)
    cpath.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(cpath), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            holder = cpath.read_text().strip() or "unknown"
        except OSError:
            holder = "unknown"
        yield Claim(False, holder)
        return
    try:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        cpath.write_text(f"pid {os.getpid()} on host {socket.gethostname()} since {stamp}\n")
        yield Claim(True)
    finally:
        try:
            cpath.unlink(missing_ok=True)
        finally:
            lock.release()
