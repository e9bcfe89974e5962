"""Ground-truth training of LTS GPT-2 decoders (model family ``gpt``) behind ``train.py``.

One architecture is trained as a causal language model with LTS's protocol
(:mod:`tfnas.systems.causal_lm`, settings in the ``causal_lm`` config group)
on the data of :mod:`tfnas.data.causal_datamodule` (PTB's three files by
default, tokenized like the scoring text; WikiText-103 through ``datasets``
with ``data.source=wikitext103``). The record (``source="train"``)
holds the training-free scores of the untrained model (on the scoring batch
``batch_index``, as ``score.py`` computes them) and the ground truth
``truth = {valid_loss, valid_ppl, test_loss, test_ppl, train_loss, status,
steps}`` of the last evaluation, with the evaluation curve in
``extra["curves"]`` and the benchmark's own perplexities in
``extra["benchmark_truth"]``. Resume, skip and error records follow
:mod:`tfnas.tasks.loop`, as for the other families.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from tfnas import results
from tfnas.callbacks import InitialScores, TrainingProgress
from tfnas.data.causal_datamodule import CausalLMDataModule
from tfnas.models.lts_gpt2 import parameter_counts
from tfnas.systems.causal_lm import CausalLMSystem
from tfnas.systems.common import TrainingDiverged
from tfnas.tasks.loop import (ArchitectureJob, announce_training, fmt, resume_checkpoint, run_dir, run_job,
                              trainer_settings)
from tfnas.tasks.runtime import make_loggers, make_trainer, to_container
from tfnas.tasks.score import scorer, sweep_settings

log = logging.getLogger("tfnas.train")


def make_datamodule(cfg: DictConfig, data: Any, tgt_len: int) -> CausalLMDataModule:
    """The training data of ``cfg.causal_lm.data`` (its ``_target_``), tokenized as the scoring text ``data``.

    Args:
        cfg: the composed config.
        data: the scoring text (:class:`~tfnas.data.causal_text.CausalTextScoringData`): its source,
            data folder and tokenizer are reused.
        tgt_len: the architecture's ``tgt_len``, used where the config's window lengths are null.
    """
    d = cfg.causal_lm.data
    return instantiate(d, text=data, tgt_len=int(d.tgt_len or tgt_len), eval_tgt_len=int(d.eval_tgt_len or tgt_len),
                       seed=int(cfg.seed), _convert_="all")


def gpt_train_settings(cfg: DictConfig, space: Any, data: Any) -> dict[str, Any]:
    """Everything that changes a GPT train record except the architecture: the scoring settings,
    the ``causal_lm`` group without its checkpointing, and the result-changing trainer settings.
    The text files of ``causal_lm.data`` enter by name only, as the scoring text's."""
    lm = dict(to_container(cfg.causal_lm))
    lm.pop("checkpoint_every_n_steps", None)
    lm["data"] = {k: Path(str(v)).name if k.endswith("_path") and v else v for k, v in (lm.get("data") or {}).items()}
    trainer = lm.pop("trainer", {})
    return {**sweep_settings(cfg, space, data), "task": "train", "causal_lm": lm,
            "trainer": {**trainer_settings(trainer, "gpt"), "val_check_interval": trainer.get("val_check_interval")}}  # fmt: skip


def train_gpt_one(cfg: DictConfig, space: Any, data: Any, index: int, settings: dict, chash: str) -> results.Record:
    """Train architecture ``index``; its record (never raises for the architecture's faults)."""
    t0 = time.perf_counter()
    rec = results.Record(space=space.name, arch=index, benchmark_id=None, seed=int(cfg.seed), config_hash=chash,
                         source="train", settings=dict(settings, arch=index))  # fmt: skip
    try:
        arch = space[index]
        rec.benchmark_id = arch.benchmark_id
        model = space.build(arch, seed=int(cfg.seed))
        datamodule = make_datamodule(cfg, data, model.config.tgt_len)
        o = cfg.causal_lm.optim
        system = CausalLMSystem(
            model, lr=float(o.lr), optimizer=str(o.name), weight_decay=float(o.weight_decay),
            warmup_steps=int(o.warmup_steps), max_steps=int(o.max_steps), eta_min=float(o.eta_min),
            seed=int(cfg.seed), eval_initial=bool(cfg.causal_lm.eval_initial),
        )  # fmt: skip
        folder = run_dir(cfg, space.name, index, chash)
        ckpt = resume_checkpoint(cfg, folder)
        initial_scorer = scorer(cfg, space, data) if ckpt is None else None
        keeper = InitialScores(initial_scorer)
        checkpointing = ModelCheckpoint(
            dirpath=str(folder), filename="step{step:06d}", auto_insert_metric_name=False, save_last=True,
            save_top_k=1, every_n_train_steps=int(cfg.causal_lm.checkpoint_every_n_steps), enable_version_counter=False,
        )  # fmt: skip
        loggers = make_loggers(cfg.logger, str(Path(cfg.results_dir) / "tensorboard"), f"{space.name}_train",
                               f"arch_{index:06d}_{chash}")  # fmt: skip
        trainer_cfg = {**dict(to_container(cfg.causal_lm.trainer)), "max_steps": int(o.max_steps),
                       "default_root_dir": str(folder)}  # fmt: skip
        callbacks = ([initial_scorer] if initial_scorer else []) + [keeper, checkpointing,
                                                                    TrainingProgress(f"arch {index}")]
        trainer = make_trainer(trainer_cfg, loggers, callbacks)
        counts = parameter_counts(model)
        log.info(f"arch {index} (id {arch.benchmark_id}): training {counts['total']:,} parameters "
                 f"({counts['nonembedding']:,} non-embedding)" + (f", resuming from {ckpt}" if ckpt else ""))
        t_fit = time.perf_counter()
        try:
            trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt)
            if not system.history or system.history[-1]["step"] != trainer.global_step:
                trainer.validate(system, datamodule=datamodule, verbose=False)  # the trained model's evaluation
        except TrainingDiverged as exc:
            log.warning(f"arch {index}: {exc}")
        if not system.history:
            raise RuntimeError("no evaluation ran, so there is no ground truth: causal_lm.optim.max_steps and "
                               "causal_lm.trainer.limit_val_batches must be > 0")
        initial = keeper.result() or {}
        rec.scores, rec.reasons = dict(initial.get("scores", {})), dict(initial.get("reasons", {}))
        rec.truth = system.ground_truth()
        rec.extra.update({
            "curves": system.curves(),
            "initial": dict(system.initial),
            "failed_training": system.diverged,
            "benchmark_truth": dict(arch.truth),
            "num_params": counts,
            "train_data": datamodule.describe(),
            "score_seconds": initial.get("seconds"),
            "train_seconds": time.perf_counter() - t_fit,
            "resumed_from": ckpt,
            "checkpoint_dir": str(folder),
        })  # fmt: skip
    except Exception as exc:  # recorded, never raised: one architecture must not stop a sweep
        rec.fail(exc, keep_truth=False)
    rec.seconds = time.perf_counter() - t0
    return rec


class GptTrainJob(ArchitectureJob):
    """Trains LTS GPT-2 architectures with LTS's protocol (see the module docstring)."""

    verb = "train"
    report_path = True

    def prepare(self, indices: list[int]) -> dict[str, Any]:
        self.data = instantiate(self.cfg.data, _convert_="all")
        lm = self.cfg.causal_lm
        tgt = lm.data.get("tgt_len") or "the architecture's tgt_len"
        announce_training(self.cfg, self.space.name, f"{lm.optim.max_steps} steps of {lm.data.batch_size} x {tgt} "
                          f"tokens ({lm.optim.name}, lr {lm.optim.lr}), evaluation every "
                          f"{lm.trainer.get('val_check_interval')} steps",
                          "LTS's GPT-2 protocol", "days on a CPU, GPU advised; experiment=quick_gpt takes half an hour")
        return gpt_train_settings(self.cfg, self.space, self.data)

    def run_one(self, index: int, settings: dict[str, Any], chash: str) -> results.Record:
        rec = train_gpt_one(self.cfg, self.space, self.data, index, settings, chash)
        gc.collect()  # the Trainer and the system reference each other: free this run's model now
        return rec

    def summary(self, rec: results.Record) -> str:
        t = rec.truth
        return (f"{t['status']}: valid_ppl={fmt(t['valid_ppl'], '.2f')} test_ppl={fmt(t['test_ppl'], '.2f')} "
                f"after {t['steps']} steps")


def train_gpt(cfg: DictConfig, space: Any) -> dict[str, Any]:
    """Train LTS GPT-2 architecture ``cfg.arch`` (see the module docstring)."""
    return run_job(GptTrainJob(cfg, space)).counts_with_last_record()
