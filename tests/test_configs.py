"""The config groups of score, train and analyze compose in every combination that can interact; every group instantiates.

Groups interact only through the space (``data: ${space}``, ``metrics: ${space}``)
and the experiment (its ``override /space`` etc.): the test composes every
option of every group under every space, and every experiment (and none)
under every space. (The full product is 280 score and 560 train
compositions at about 0.4 s each.) Runs on the synthetic data folder
(tests/synthetic.py): no real data.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import tfnas.hydra_support  # noqa: F401  (registers the config resolvers)
from tfnas.scoring import registry
from tfnas.tasks.runtime import make_loggers, make_trainer

CONF = Path(__file__).resolve().parents[1] / "conf"
#: Groups whose options are chosen on the command line (hydra/launcher is covered by test_scale_out.py).
SKIP_GROUPS = ("hydra",)


def options(group: str) -> list[str]:
    """The options of a config group: the YAML files of ``conf/<group>/``."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def groups_of(config_name: str) -> list[str]:
    """The config groups in the defaults list of ``conf/<config_name>.yaml``."""
    defaults = OmegaConf.load(CONF / f"{config_name}.yaml").get("defaults", [])
    names = [next(iter(d)) for d in defaults if isinstance(d, dict) or OmegaConf.is_dict(d)]
    return [g for g in names if g not in SKIP_GROUPS and (CONF / g).is_dir()]


def combinations(config_name: str) -> list[list[str]]:
    """Every option of every group under every space (when the config has spaces); ``experiment`` also unset."""
    groups = groups_of(config_name)
    bases = [[f"space={o}"] for o in options("space")] if "space" in groups else [[]]
    others = [[f"{g}={o}"] for g in groups if g != "space" for o in options(g)]
    if "experiment" in groups:
        others.append([])  # the default: no experiment
    return [base + other for base, other in itertools.product(bases, others)]


@pytest.fixture(scope="module")
def compose_in(synthetic_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    paths = [f"paths.data_dir={synthetic_data_dir}", f"paths.results_dir={out}/results", f"paths.log_dir={out}/logs"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield lambda name, overrides: compose(name, overrides=[*paths, *overrides])


@pytest.mark.parametrize("config_name", ["score", "train", "analyze"])
def test_every_group_combination_composes_and_resolves(compose_in, config_name):
    combos = combinations(config_name)
    assert len(combos) >= (1 if config_name == "analyze" else 2 * (5 + 7))  # spaces x (data and metrics options)
    for overrides in combos:
        cfg = compose_in(config_name, overrides)
        resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        for override in overrides:
            group, option = override.split("=")
            if group in resolved and group in ("space", "data", "trainer"):  # each names its _target_
                assert "_target_" in resolved[group], override


def test_every_space_data_trainer_and_logger_instantiates(compose_in, tmp_path):
    for space in options("space"):
        cfg = compose_in("score", [f"space={space}"])
        s = instantiate(cfg.space, _convert_="all")
        assert s.name == space and len(s) > 0 and isinstance(s.family, str)
        assert s.build(s[0], seed=0) is not None
        # the space's default metrics are metrics of its family
        registry.get(s.family, cfg.metrics.names)
    for data in options("data"):
        d = instantiate(compose_in("score", [f"data={data}"]).data, _convert_="all")
        assert isinstance(d.describe(), dict)
    for trainer in options("trainer"):
        t = make_trainer(compose_in("score", [f"trainer={trainer}"]).trainer, [], [])
        assert t.max_steps == (0 if trainer == "score" else -1)
    for logger in options("logger"):
        loggers = make_loggers(compose_in("score", [f"logger={logger}"]).logger, str(tmp_path), "run", "v0")
        assert len(loggers) == (0 if logger == "none" else 1)


def test_every_metrics_option_belongs_to_a_family(compose_in):
    families = {instantiate(compose_in("score", [f"space={s}"]).space, _convert_="all").family for s in options("space")}
    for metrics in options("metrics"):
        names = compose_in("score", [f"metrics={metrics}"]).metrics.names
        valid = []
        for family in sorted(families):
            try:
                registry.get(family, names)
                valid.append(family)
            except KeyError:
                pass
        assert valid, f"metrics={metrics} names metrics of no model family {sorted(families)}"


def test_training_groups_instantiate(compose_in):
    cfg = compose_in("train", ["experiment=quick"])
    dm = instantiate(cfg.datamodule, _convert_="all")
    assert dm.bptt == 35 and dm.describe()["train_eval_batches"] == 24  # the experiment's protocol reaches it
    assert make_trainer(cfg.trainer, [], []).max_epochs == 1
    bert = compose_in("train", ["experiment=quick_bert"])
    pre = instantiate(bert.electra.data, seed=0, _convert_="all")
    assert pre.batch_size == 16 and pre.seq_len == 128
    glue = instantiate(bert.glue.datamodule, task="rte", seed=0, _convert_="all")
    assert glue.task.name == "rte" and glue.batch_size == bert.glue.batch_size
    for stage in (bert.electra.trainer, bert.glue.trainer):
        assert make_trainer(stage, [], []).precision == "32-true"
