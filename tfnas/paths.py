"""Where the data lives.

The data folder is ``$TFNAS_DATA_DIR`` if set, else ``shared/data`` beside the
repository (``<repo>/../shared/data``). A relative ``$TFNAS_DATA_DIR`` is taken
from the current directory when it is read, and the folder is handed on as an
absolute path, so that a job or a test running in another directory sees the
same folder. Configs expose the folder as ``paths.data_dir`` (what the user
sets) and ``paths.absolute_data_dir`` (what every config reads); see
``conf/paths/default.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def repo_data_dir() -> Path:
    """``shared/data`` beside the repository: the data folder when ``$TFNAS_DATA_DIR`` is not set."""
    return REPO_ROOT.parent / "shared" / "data"


def default_data_dir() -> Path:
    """The data folder as an absolute path: ``$TFNAS_DATA_DIR`` (relative: from the current directory) or :func:`repo_data_dir`."""
    env = os.environ.get("TFNAS_DATA_DIR", "").strip()
    return Path(env).expanduser().absolute() if env else repo_data_dir()


def analysis_dir(results_dir: object) -> str:
    """Where ``analyze.py`` writes by default: ``<results_dir>/analysis`` for one results folder, ``analysis`` for several."""
    if isinstance(results_dir, (str, os.PathLike)):
        return str(Path(results_dir) / "analysis")
    return "analysis"
