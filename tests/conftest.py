import os
from pathlib import Path

import pytest

from tfnas.paths import default_data_dir


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder (../shared/data or $TFNAS_DATA_DIR); tests that need it skip loudly without it."""
    d = default_data_dir()
    if not d.is_dir():
        pytest.fail(f"real data folder {d} not found; set TFNAS_DATA_DIR")
    return d


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(int(os.environ.get("TFNAS_TEST_THREADS", "2")))
    yield
