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


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory) -> Path:
    """A small made-up data folder in the layout of the real one (tests/synthetic.py): for plumbing tests."""
    from synthetic import make_data_dir

    return make_data_dir(tmp_path_factory.mktemp("synthetic_data"))


@pytest.fixture(autouse=True)
def _few_threads():
    import torch

    torch.set_num_threads(int(os.environ.get("TFNAS_TEST_THREADS", "2")))
    yield


#: The metric set of :func:`scored_nlp`: one paper metric (three layer columns) and a baseline, cheap on CPU.
CHEAP_METRICS = "metrics.names=[hidden_covariance,num_params]"


@pytest.fixture(scope="session")
def scored_nlp(tmp_path_factory, data_dir) -> Path:
    """Real records of the first 25 NAS-Bench-NLP (WikiText-2 log) architectures, scored once per session.

    ``score.py``'s own task with hidden covariance and the parameter count, on a
    20 x 10 PTB test minibatch (the paper's is 70 x 50) to keep it fast; the
    ground truth is the benchmark's. Returns the results folder (records in
    ``nasbench_nlp/``).
    """
    from hydra import compose, initialize_config_dir

    import tfnas.hydra_support  # noqa: F401  (resolvers)
    from tfnas.paths import REPO_ROOT
    from tfnas.tasks.score import score

    out = tmp_path_factory.mktemp("scored_nlp") / "results"
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("score", overrides=[
            f"paths.data_dir={data_dir}", f"paths.results_dir={out}", "shard=0", "shard_size=25", CHEAP_METRICS,
            "data.bptt=20", "data.batch_size=10", "logger=none", f"threads={os.environ.get('TFNAS_TEST_THREADS', '2')}",
        ])
        counts = score(cfg)
    assert counts["ok"] == 25, counts
    return out
