"""Where the data lives.

The default data folder is ``$TFNAS_DATA_DIR`` if set, else ``../shared/data``
relative to the repository root (the layout of the development checkout).
Configs expose it as ``paths.data_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Path:
    """The data folder: ``$TFNAS_DATA_DIR`` or ``<repo>/../shared/data``."""
    env = os.environ.get("TFNAS_DATA_DIR")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")
