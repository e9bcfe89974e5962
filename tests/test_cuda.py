"""Scoring on a CUDA device: the values equal the CPU's, and the task path picks the GPU.

Marked ``cuda``; every test skips unless torch sees a CUDA device (``pytest -m
cuda``; ``bench/gpu_check.sh`` runs them first). ``TFNAS_TEST_DEVICE=cpu``
runs the same code with the CPU as the "device", which only proves the
plumbing of the tests (the comparison is then CPU against CPU).

The models are built on the CPU with the seed (as ``score.py`` does) and
copied to the device, and the noise of the noised metrics comes from seeded
CPU generators, so both sides score the same weights and inputs; what may
differ is the order of floating-point reductions, hence a relative tolerance
of 1e-4 (the one ``bench/gpu_check.sh`` asks of 50 + 20 architectures).
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import tfnas.hydra_support  # noqa: F401  (resolvers)
from tfnas.callbacks import move_batch
from tfnas.paths import REPO_ROOT
from tfnas.scoring import engine
from tfnas.tasks.score import score

DEVICE = os.environ.get("TFNAS_TEST_DEVICE", "cuda")
REL = 1e-4

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="no CUDA device"),
]

#: (space, data, architecture index): a WikiText-2-log cell and a NAS-Bench-BERT encoder, each with its
#: space's default (paper) metrics; BERT on the CPU-sized 8 x 128 text batch to keep the CPU side short.
CASES = {
    "rnn": ("nasbench_nlp", "nasbench_nlp", 7),
    "bert": ("nasbench_bert", "text_cpu", 7),
}


def _cfg(data_dir, space, data, overrides=()):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose("score", overrides=[f"space={space}", f"data={data}", f"paths.data_dir={data_dir}",
                                           "logger=none", *overrides])


def _scores(cfg, index, device):
    space, data = instantiate(cfg.space, _convert_="all"), instantiate(cfg.data, _convert_="all")
    model = space.build(space[index], seed=int(cfg.seed)).to(device)
    batch = move_batch(data.scoring_batch(int(cfg.batch_index)), torch.device(device))
    return engine.score(space.family, model, batch, cfg.metrics.names, seed=int(cfg.seed))


def _assert_same(ref, got):
    assert set(got.scores) == set(ref.scores)
    assert set(got.reasons) == set(ref.reasons), (ref.reasons, got.reasons)
    for name, want in ref.scores.items():
        have = got.scores[name]
        if math.isnan(want) or math.isinf(want):
            assert have == want or (math.isnan(want) and math.isnan(have)), (name, want, have)
        else:
            assert have == pytest.approx(want, rel=REL), name


@pytest.mark.parametrize("family", sorted(CASES))
def test_engine_on_the_device_equals_cpu(data_dir, family):
    space, data, index = CASES[family]
    cfg = _cfg(data_dir, space, data)
    ref = _scores(cfg, index, "cpu")
    got = _scores(cfg, index, DEVICE)
    assert ref.scores and not any(r.startswith("error:") for r in ref.reasons.values()), ref.reasons
    _assert_same(ref, got)


def test_score_task_scores_on_the_gpu_it_finds(data_dir, tmp_path):
    """``score.py``'s default trainer (accelerator=auto) puts the model on the GPU and the record says so."""
    accel = [] if DEVICE.startswith("cuda") else ["trainer.accelerator=cpu"]
    cfg = _cfg(data_dir, "nasbench_nlp", "nasbench_nlp",
               ["arch=3", "metrics.names=[hidden_covariance,num_params]", f"paths.results_dir={tmp_path}", *accel])
    assert score(cfg)["ok"] == 1
    (path,) = (tmp_path / "nasbench_nlp").glob("arch_*.json")
    extra = json.loads(path.read_text())["extra"]
    if DEVICE.startswith("cuda"):
        assert extra["device"].startswith("cuda") and extra["cuda_peak_bytes"] > 0, extra
    else:
        assert extra["device"] == "cpu" and "cuda_peak_bytes" not in extra, extra
