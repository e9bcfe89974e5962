"""Ground-truth training of NAS-Bench-BERT architectures: ELECTRA pretraining, then GLUE fine-tuning.

``train_bert(cfg)`` trains architecture ``cfg.arch`` of the NAS-Bench-BERT
space with the benchmark's protocol (docs/SPACES.md §2, "Ground-truth training")
and writes one record (``source="train"``) in the format of ``score.py``:

- ``scores`` / ``reasons``: the training-free scores of the untrained
  discriminator, computed by :class:`~tfnas.callbacks.TrainingFreeScores`
  (model family ``"bert"``) at the start of pretraining, on the scoring
  batch ``batch_index`` of ``cfg.data`` (:class:`~tfnas.data.text.TextScoringData`).
  The discriminator is built exactly as ``space.build(arch, seed)`` builds it
  (faithful sizes), so these equal ``score.py``'s scores of the same
  architecture and seed (without ``paper_compat``);
- ``truth``: the dev score ×100 of every benchmark task run, under the
  benchmark's keys (``cola mnli mrpc qnli qqp rte sst sts``), and ``glue``,
  their mean (the benchmark's ``scores.glue`` when all eight ran);
- ``extra``: ``glue_tasks`` (benchmark keys averaged into ``glue``),
  ``tasks_run`` (every task fine-tuned, WNLI included), ``finetune`` (per
  task: metrics ×100, per-epoch history, sizes, data sources),
  ``pretrain`` (loss curves: training-window means and held-out evaluations,
  steps, seconds), ``benchmark_truth`` (the benchmark's own scores),
  ``num_params``, ``checkpoint_dir``.

Stages and resume. Everything of one run lives in
``<checkpoint.dir>/nasbench_bert/arch_<i>_<pretraining hash>/``:
``pretrain/last.ckpt`` (every ``electra.checkpoint_every_n_steps``),
``pretrain.json`` and ``discriminator/`` (``save_pretrained``) once
pretraining finished, and ``glue_<hash>/<task>/{last.ckpt,result.json}``.
Re-running the same command resumes pretraining from its ``last.ckpt``
(``ckpt_path=...`` names another), skips a finished pretraining, resumes a
fine-tuning from its last epoch and skips finished ones. The pretraining
folder is keyed by the pretraining and scoring settings only, so changing
the GLUE settings or tasks reuses the pretrained model. ``overwrite=true``
(or ``resume=false``) starts every stage afresh.

Skips and failures (the job loop, :mod:`tfnas.tasks.loop`). An existing
``status: "ok"`` record for the same
configuration is kept and the job skipped (unless ``overwrite``); an existing
``"error"`` record is retried, resuming whatever stages had finished. A task
that fails (e.g. its data cannot be loaded) does not stop the others; the
record then has ``status: "error"`` naming the failed tasks, an empty
``truth`` and the finished tasks' scores in ``extra["partial_truth"]``. No
exception reaches Hydra, so a multirun continues.

Configuration: the ``electra`` and ``glue`` config groups
(``conf/electra/default.yaml``, ``conf/glue/default.yaml``) plus the common
keys of ``train.yaml`` (``arch seed batch_index paper_compat overwrite resume
ckpt_path results_dir checkpoint.dir space data metrics logger``). The RNN
``trainer`` group is not used: each stage has its own Trainer settings
(``electra.trainer``, ``glue.trainer``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from tfnas import results
from tfnas.callbacks import InitialScores, TrainingProgress
from tfnas.data.glue import get_task
from tfnas.models.electra import ElectraPretrainingModel
from tfnas.models.flexibert import FlexiBertModel
from tfnas.rng import seed_all
from tfnas.spaces.nasbench_bert.benchmark import GLUE_TASK_KEYS
from tfnas.spaces.nasbench_bert.space import model_config
from tfnas.systems.electra import ElectraPretrainingSystem
from tfnas.systems.glue import GlueSystem
from tfnas.tasks.loop import (ArchitectureJob, announce_training, fresh_start, resume_checkpoint, run_dir, run_job,
                              trainer_settings)
from tfnas.tasks.runtime import make_loggers, make_trainer, setup_runtime, to_container
from tfnas.tasks.score import scorer, sweep_settings

log = logging.getLogger("tfnas.train")

#: ``electra.data`` keys that do not change the rows (left out of the hashes).
_DATA_NON_RESULT = ("_target_", "data_dir", "tokenizer_dir", "cache_dir", "num_workers", "num_proc", "path",
                    "val_path")
#: ``glue`` keys that do not change a task's result.
_GLUE_NON_RESULT = ("tasks", "tsv_dir", "tokenizer_dir", "num_workers", "trainer", "datamodule", "eval_batch_size",
                    "task_epochs", "keep_checkpoints", "epochs", "source", "dataset")


# ---------------------------------------------------------------------------- settings and hashes
def pretrain_settings(cfg: DictConfig) -> dict[str, Any]:
    """The pretraining settings that change the pretrained model (file names only for paths)."""
    e = cfg.electra
    data = {k: v for k, v in dict(to_container(e.data)).items() if k not in _DATA_NON_RESULT}
    if e.data.get("source") == "file":
        data["path"] = Path(str(e.data.path)).name if e.data.get("path") else "ptb.train.txt"
    return {
        "data": data,
        "model": dict(to_container(e.model)),
        "optim": dict(to_container(e.optim)),
        "trainer": trainer_settings(e.get("trainer"), "bert"),
    }


def task_epochs(cfg: DictConfig, task: str) -> int:
    """Fine-tuning epochs of ``task``: ``glue.task_epochs[task]`` else ``glue.epochs``."""
    per = dict(to_container(cfg.glue.get("task_epochs")) or {})
    name = get_task(task).name
    return int(per.get(name, cfg.glue.epochs))


def finetune_settings(cfg: DictConfig, task: str) -> dict[str, Any]:
    """The settings that change one task's fine-tuning result (besides the pretrained model)."""
    g = {k: v for k, v in dict(to_container(cfg.glue)).items() if k not in _GLUE_NON_RESULT}
    return {**g, "task": get_task(task).name, "epochs": task_epochs(cfg, task),
            "trainer": trainer_settings(cfg.glue.get("trainer"), "bert")}


def bert_train_settings(cfg: DictConfig, space: Any, data: Any) -> dict[str, Any]:
    """Everything that changes a NAS-Bench-BERT train record, except the architecture index.

    The scoring settings of :func:`tfnas.tasks.score.sweep_settings`, ``task:
    "train"``, the pretraining settings and the GLUE settings with the task list.
    """
    tasks = [get_task(t).name for t in cfg.glue.tasks]
    return {
        **sweep_settings(cfg, space, data),
        "task": "train",
        "electra": pretrain_settings(cfg),
        "glue": {"tasks": tasks, **{t: finetune_settings(cfg, t) for t in tasks}},
    }


def run_folder(cfg: DictConfig, space: Any, data: Any, index: int) -> Path:
    """``<checkpoint.dir>/<space>/arch_<i>_<hash of the scoring and pretraining settings>``."""
    key = {**sweep_settings(cfg, space, data), "electra": pretrain_settings(cfg), "arch": index}
    return run_dir(cfg, space.name, index, results.config_hash(key))


# ---------------------------------------------------------------------------- stages
def pretrain(cfg: DictConfig, space: Any, arch: Any, data: Any, folder: Path, loggers: list) -> dict[str, Any]:
    """ELECTRA-pretrain ``arch``'s discriminator, or load the summary of a finished pretraining.

    Writes ``folder/discriminator/`` and ``folder/pretrain.json``.

    Returns:
        The summary: ``initial`` (training-free scores, reasons, seconds),
        ``history`` (training-loss window means), ``eval_history``,
        ``steps``, ``seconds``, ``num_params``, ``resumed_from``.

    Raises:
        TrainingDiverged: a non-finite loss.
        RuntimeError: pretraining ended before ``max_steps`` (e.g. a finite corpus stream ran out).
    """
    done = folder / "pretrain.json"
    if done.is_file() and (folder / "discriminator").is_dir() and not fresh_start(cfg):
        log.info(f"pretraining finished earlier: {done}")
        return results.read_json(done)
    e = cfg.electra
    seed = int(cfg.seed)
    dm = instantiate(e.data, seed=seed, _convert_="all")
    tok = dm.tokenizer
    # Same RNG calls as space.build(arch, seed): the discriminator is the scored model.
    seed_all(seed)
    model = ElectraPretrainingModel(model_config(arch.spec, paper_compat=False), dm.special_ids(), tok.mask_token_id,
                                    **dict(to_container(e.model)))
    optim = dict(to_container(e.optim))
    max_steps = int(optim["max_steps"])
    system = ElectraPretrainingSystem(model, **optim, seed=seed, history_every=int(e.get("history_every", 100)))
    ckpt_dir = folder / "pretrain"
    ckpt = resume_checkpoint(cfg, ckpt_dir)
    initial_scorer = scorer(cfg, space, data) if ckpt is None else None
    keeper = InitialScores(initial_scorer)
    checkpointing = ModelCheckpoint(
        dirpath=str(ckpt_dir), filename="step{step:07d}", auto_insert_metric_name=False, save_last=True,
        save_top_k=0, every_n_train_steps=int(e.get("checkpoint_every_n_steps", 1000)), enable_version_counter=False,
    )
    trainer_cfg = {**dict(to_container(e.get("trainer")) or {}), "max_steps": max_steps, "max_epochs": -1,
                   "num_sanity_val_steps": 0, "default_root_dir": str(folder)}
    if getattr(dm, "has_validation", False):  # held-out losses every val_every_n_steps, across epochs
        trainer_cfg.update(check_val_every_n_epoch=None, val_check_interval=int(e.get("val_every_n_steps", 1000)),
                           limit_val_batches=e.get("val_batches") or 1.0)
    else:
        trainer_cfg["limit_val_batches"] = 0
    trainer = make_trainer(trainer_cfg, loggers, ([initial_scorer] if initial_scorer else [])
                           + [keeper, checkpointing, TrainingProgress(f"arch {arch.index} ELECTRA pretraining")])
    n_params = sum(p.numel() for p in model.discriminator.parameters())
    log.info(f"pretraining arch {arch.index} (id {arch.benchmark_id}): discriminator {n_params:,} parameters, "
             f"{max_steps} steps of {dm.batch_size} x {dm.seq_len}" + (f", resuming from {ckpt}" if ckpt else ""))
    t0 = time.perf_counter()
    trainer.fit(system, datamodule=dm, ckpt_path=ckpt)
    if trainer.global_step < max_steps:
        raise RuntimeError(f"pretraining stopped at step {trainer.global_step} of {max_steps} "
                           "(did the corpus run out or training get interrupted?)")
    model.discriminator.save_pretrained(str(folder / "discriminator"))
    summary = {
        "initial": keeper.result() or {},
        "history": system.history,
        "eval_history": system.eval_history,
        "steps": int(trainer.global_step),
        "seconds": time.perf_counter() - t0,
        "num_params": n_params,
        "resumed_from": ckpt,
        "data": dm.describe(),
    }
    results.write_atomic(done, summary)
    return summary


def finetune(cfg: DictConfig, task: str, disc_dir: Path, task_dir: Path, loggers: list) -> dict[str, Any]:
    """Fine-tune the pretrained discriminator on one GLUE task, or load its finished result.

    Writes ``task_dir/result.json``.

    Returns:
        ``{"task", "benchmark_key", "metric", "score" (×100), "metrics" (all, ×100),
        "epochs", "history", "n_train", "n_dev", "sources", "seconds"}``.

    Raises:
        TrainingDiverged: a non-finite loss.
        RuntimeError / FileNotFoundError: the task's data cannot be loaded.
    """
    t = get_task(task)
    done = task_dir / "result.json"
    if done.is_file() and not fresh_start(cfg):
        return results.read_json(done)
    g = cfg.glue
    seed = int(cfg.seed)
    epochs = task_epochs(cfg, t.name)
    dm = instantiate(g.datamodule, task=t.name, seed=seed, _convert_="all")
    dm.setup()
    seed_all(seed)
    encoder = FlexiBertModel.from_pretrained(str(disc_dir))
    system = GlueSystem(encoder, t, lr=g.lr, layer_decay=g.layer_decay, weight_decay=g.weight_decay,
                        warmup_fraction=g.warmup_fraction, adam_eps=g.adam_eps, dropout=g.dropout)
    ckpt = resume_checkpoint(cfg, task_dir, explicit=False)
    checkpointing = ModelCheckpoint(dirpath=str(task_dir), save_last=True, save_top_k=0, every_n_epochs=1,
                                    save_on_train_epoch_end=False, enable_version_counter=False)
    trainer_cfg = {**dict(to_container(g.get("trainer")) or {}), "max_epochs": epochs, "num_sanity_val_steps": 0,
                   "check_val_every_n_epoch": 1, "default_root_dir": str(task_dir)}
    trainer = make_trainer(trainer_cfg, loggers, [checkpointing, TrainingProgress(f"{t.name} fine-tuning")])
    log.info(f"fine-tuning {t.name}: {epochs} epoch(s) of {dm.steps_per_epoch()} steps"
             + (f", resuming from {ckpt}" if ckpt else ""))
    t0 = time.perf_counter()
    trainer.fit(system, datamodule=dm, ckpt_path=ckpt)
    final = system.final()
    if not final or len(system.history) < epochs:
        raise RuntimeError(f"{t.name}: fine-tuning ended after {len(system.history)} of {epochs} evaluated epochs")
    result = {
        "task": t.name,
        "benchmark_key": t.benchmark_key,
        "metric": t.metric,
        "score": 100.0 * final[t.metric],
        "metrics": {k: 100.0 * v for k, v in final.items()},
        "epochs": epochs,
        "history": system.history,
        "n_train": len(dm.train_set),
        "n_dev": len(dm.dev_set),
        "sources": dict(dm.sources),
        "seconds": time.perf_counter() - t0,
    }
    results.write_atomic(done, result)
    if not g.get("keep_checkpoints", False):  # the result is final; the fine-tuned weights are not needed
        (task_dir / "last.ckpt").unlink(missing_ok=True)
    return result


def glue_truth(task_results: dict[str, dict[str, Any]]) -> tuple[dict[str, float], list[str]]:
    """The record's truth from finished task results.

    Args:
        task_results: task name -> :func:`finetune`'s result.

    Returns:
        ``(truth, keys)``: ``truth`` maps each benchmark key run to its score
        (×100) and ``glue`` to their mean (absent when no benchmark task ran);
        ``keys`` lists the benchmark keys averaged, in the benchmark's order.
    """
    by_key = {r["benchmark_key"]: float(r["score"]) for r in task_results.values() if r.get("benchmark_key")}
    keys = [k for k in GLUE_TASK_KEYS if k in by_key]
    truth = {k: by_key[k] for k in keys}
    if keys:
        truth["glue"] = float(sum(truth[k] for k in keys) / len(keys))
    return truth, keys


def train_bert_one(cfg: DictConfig, space: Any, data: Any, index: int, settings: dict, chash: str) -> results.Record:
    """Pretrain and fine-tune architecture ``index``; its record (never raises for the architecture's faults)."""
    t0 = time.perf_counter()
    rec = results.Record(space=space.name, arch=index, benchmark_id=None, seed=int(cfg.seed), config_hash=chash,
                         source="train", settings=dict(settings, arch=index))
    try:
        arch = space[index]
        rec.benchmark_id = arch.benchmark_id
        folder = run_folder(cfg, space, data, index)
        tb_root = str(Path(str(cfg.results_dir)) / "tensorboard")
        version = f"arch_{index:06d}_{chash}"

        def stage_loggers(stage: str) -> list:
            return make_loggers(cfg.logger, tb_root, f"{space.name}_train", f"{version}/{stage}")

        summary = pretrain(cfg, space, arch, data, folder, stage_loggers("pretrain"))
        initial = summary.get("initial") or {}
        rec.scores, rec.reasons = dict(initial.get("scores", {})), dict(initial.get("reasons", {}))
        disc_dir = folder / "discriminator"
        tasks = [get_task(t).name for t in cfg.glue.tasks]
        task_results: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        for task in tasks:
            task_dir = folder / f"glue_{results.config_hash(finetune_settings(cfg, task))}" / task
            try:
                task_results[task] = finetune(cfg, task, disc_dir, task_dir, stage_loggers(f"glue_{task}"))
                r = task_results[task]
                log.info(f"arch {index} {task}: dev {r['metric']} = {r['score']:.2f} ({r['epochs']} epochs)")
            except Exception as exc:  # one task's failure must not cost the others
                errors[task] = f"{type(exc).__name__}: {exc}"
                log.error(f"arch {index} {task}: ERROR {errors[task]}")
        truth, keys = glue_truth(task_results)
        rec.extra.update({
            "glue_tasks": keys,
            "tasks_run": [t for t in tasks if t in task_results],
            "finetune": task_results,
            "pretrain": {k: summary.get(k) for k in ("history", "eval_history", "steps", "seconds", "resumed_from",
                                                      "data")},
            "benchmark_truth": dict(arch.truth),
            "num_params": summary.get("num_params"),
            "score_seconds": initial.get("seconds"),
            "checkpoint_dir": str(folder),
        })
        if "wnli" in task_results:
            rec.extra["wnli"] = task_results["wnli"]["score"]
        if errors:
            rec.status = "error"
            rec.error = "; ".join(f"{k}: {v}" for k, v in errors.items())
            rec.extra["task_errors"] = errors
            rec.extra["partial_truth"] = truth
        else:
            rec.truth = truth
    except Exception as exc:  # recorded, never raised: one architecture must not stop a sweep
        rec.fail(exc, keep_truth=False)
    rec.seconds = time.perf_counter() - t0
    return rec


class BertTrainJob(ArchitectureJob):
    """Pretrains and fine-tunes NAS-Bench-BERT architectures (see the module docstring).

    An existing ``error`` record is not a finished one: the architecture is
    run again, resuming whatever stages had finished.
    """

    verb = "train"
    report_path = True

    def prepare(self, indices: list[int]) -> dict[str, Any]:
        self.data = instantiate(self.cfg.data, _convert_="all")
        e, g = self.cfg.electra, self.cfg.glue
        tasks = ", ".join(f"{get_task(t).name} ({task_epochs(self.cfg, t)} epoch(s))" for t in g.tasks)
        announce_training(self.cfg, self.space.name, f"ELECTRA pretraining for {e.optim.max_steps} steps of "
                          f"{e.data.batch_size} sequences, then GLUE fine-tuning: {tasks}",
                          "NAS-Bench-BERT's protocol",
                          "days on a CPU, GPU advised; experiment=quick_bert takes minutes")
        return bert_train_settings(self.cfg, self.space, self.data)

    def run_one(self, index: int, settings: dict[str, Any], chash: str) -> results.Record:
        return train_bert_one(self.cfg, self.space, self.data, index, settings, chash)

    def is_finished(self, old: dict[str, Any]) -> bool:
        return old.get("status") == "ok"

    def summary(self, rec: results.Record) -> str:
        return " ".join(f"{k}={v:.2f}" for k, v in rec.truth.items())


def train_bert(cfg: DictConfig, space: Any | None = None) -> dict[str, Any]:
    """Train NAS-Bench-BERT architecture ``cfg.arch`` (see the module docstring).

    Args:
        cfg: the composed ``train.yaml`` config with ``space=nasbench_bert``
            and the ``electra`` and ``glue`` groups.
        space: the instantiated space (None: instantiated here, after
            setting up threads as :func:`tfnas.tasks.train.train` does).

    Returns:
        ``{"ok", "error", "skipped", "out_of_range"}`` counts of this job,
        ``record`` (the record's path, None when out of range) and ``truth``.
    """
    if space is None:
        setup_runtime(cfg.get("threads"))
        space = instantiate(cfg.space, _convert_="all")
    return run_job(BertTrainJob(cfg, space)).counts_with_last_record()
