"""The typed schemas of ``score.py``, ``train.py`` and ``analyze.py`` (Hydra structured configs).

Each task's options are a dataclass registered in Hydra's ConfigStore
(``score_schema``, ``train_schema``, ``analyze_schema``) and named first in
the defaults list of ``conf/<task>.yaml``, so the YAML files keep the default
values and their comments while the schema gives every option its type, its
range and a one-line explanation (the ``--help`` text, :func:`options_help`).
Config groups and nested settings (``space``, ``data``, ``checkpoint``, ...)
are typed ``Any``: their own configs describe them.

A value is checked in three places, each with one line naming the option and
the values it accepts (:class:`ConfigError`, printed without a traceback by
:func:`tfnas.hydra_support.one_line_errors`):

1. the command line, before Hydra composes anything
   (:func:`check_overrides`, run by :func:`tfnas.hydra_support.command_line`):
   every value of an override of a schema option, each value of a sweep too
   (``'arch=range(0,4000)'``), against its type and range. Here a ``bool``
   option takes only ``true``/``false``: OmegaConf would turn ``no``, ``off``
   or ``0`` into ``false`` silently. Without this step a wrong type still fails
   at composition, in Hydra's own (several-line) message;
2. composition: OmegaConf enforces the schema's types on values from YAML
   files and on interpolation results (``threads: ${tfnas_threads:}`` is an
   interpolation in an ``int`` field, converted and checked when read);
3. the start of the task, before any work (:func:`validate`): the ranges of
   the resolved values (``arch >= 0``, ``threads >= 1``, ``shard >= 0``), which
   dataclass types cannot express and which an interpolation or an
   environment variable may still break (``TFNAS_THREADS=-1``), that an
   ``experiment`` is used with the space it was written for, and what this
   machine must have (:func:`check_machine`: ``trainer.accelerator=gpu`` needs
   a GPU, ``ckpt_path`` a file), which would otherwise fail every
   architecture of the run and leave an error record of each.

Whether ``arch`` lies inside the space is known only once the space is
loaded: :func:`tfnas.tasks.loop.run_job` makes it an error for a single run
and one warning for a multirun.
"""

import dataclasses
import difflib
import functools
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union, get_args, get_origin, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A wrong option value: the message is one line naming the option and what it accepts."""


def metric_names(metrics: Any) -> list[str]:
    """The metrics a config selects: ``metrics.names``.

    ``conf/metrics/all_<family>.yaml`` composes its family's list as ``family``
    and ``proxies.yaml`` as ``extra`` (Hydra's defaults list) and joins them as
    ``names: ${tfnas_concat:...}``, so neither list is copied and
    ``metrics.names=[...]`` on the command line still selects exactly its names.
    A single name without brackets (``metrics.names=hidden_covariance``) is a
    one-name list, not a string read letter by letter; None selects none; a
    repeated name counts once.
    """
    names = metrics.names
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    return list(dict.fromkeys(str(n) for n in names))  # a name given twice counts once (and hashes once)


def option(help: str, min: Optional[int] = None, choices: Optional[tuple] = None, interval: Optional[str] = None,
           items: Optional[type] = None) -> Any:
    """A schema field whose default is the YAML's (``MISSING`` here), with its explanation and range.

    Args:
        help: one line for ``--help``.
        min: smallest accepted value (inclusive) of an ``int`` option (of each item with ``items``).
        choices: the accepted values of an ``Any`` option, when a type cannot say it (of each item with ``items``).
        interval: the accepted range of a ``float`` option (of each item with ``items``) as it is written
            in words, ``"(0, 1)"``, ``"(0, 1]"``, ``"[0, inf)"``: a round bracket leaves its bound out.
        items: the option is a list (or null, if its type is ``Optional[list]``) of values of this type
            (``int``, ``float`` or ``str``), each checked by ``min``, ``choices`` or ``interval``.
    """
    return field(default=MISSING, metadata={"help": help, "min": min, "choices": choices, "interval": interval,
                                            "items": items})


def group(help: str) -> Any:
    """A config group or a nested block of settings (typed ``Any``; its own config describes it)."""
    return field(default=MISSING, metadata={"help": help, "group": True})


@dataclass
class ExperimentInfo:
    """What an ``experiment`` file declares about itself, checked by :func:`validate`."""

    name: str = MISSING   # the experiment's file name (experiment=<name>)
    space: str = MISSING  # the space it is written for (space=<name>)


@dataclass
class ArchitectureTaskConfig:
    """Options shared by ``score.py`` and ``train.py`` (one record per architecture)."""

    paths: Any = group("where data is read and results are written (conf/paths/)")
    space: Any = group("search space: nasbench_nlp, nasbench_bert, lts_gpt2_wt103, lts_gpt2_lm1b")
    data: Any = group("scoring minibatch data (default: the space's own)")
    metrics: Any = group("metric set (default: the space's; all_<family>, proxies; python -m tfnas.metrics SPACE)")
    trainer: Any = group("Lightning Trainer settings")
    logger: Any = group("tensorboard or none")
    arch: int = option("index of the architecture in the space (0 .. size-1)", min=0)
    seed: int = option("model construction seed (and the noise metrics' seed)", min=0)
    batch_index: int = option("which scoring minibatch (BPTT window / text block)", min=0)
    paper_compat: bool = option("true reproduces the paper's published columns (docs/METRICS.md)")
    threads: int = option("torch threads per job (default: TFNAS_THREADS, else cores / parallel jobs)", min=1)
    overwrite: bool = option("recompute even if the record exists")
    results_dir: str = option("where the records go (default: paths.results_dir, absolute)")


@dataclass
class ScoreConfig(ArchitectureTaskConfig):
    """``conf/score.yaml``."""

    shard: Optional[int] = option("shard mode: score arch shard*shard_size .. +shard_size-1 in one job", min=0)
    shard_size: int = option("architectures per shard", min=1)


@dataclass
class TrainConfig(ArchitectureTaskConfig):
    """``conf/train.yaml``."""

    electra: Any = group("NAS-Bench-BERT ELECTRA pretraining (space=nasbench_bert)")
    glue: Any = group("NAS-Bench-BERT GLUE fine-tuning (space=nasbench_bert)")
    causal_lm: Any = group("LTS GPT-2 causal-LM training (space=lts_gpt2_*)")
    experiment: Optional[ExperimentInfo] = field(default=None, metadata={
        "help": "set by experiment=quick|quick_bert|quick_gpt: its name and the space it is for", "group": True})
    ckpt_path: Optional[str] = option("resume from this checkpoint file")
    resume: bool = option("resume from the run's own last.ckpt when there is one")
    checkpoint: Any = group("checkpoint folder and retention")
    batch_size: int = option("training batch columns (NAS-Bench-NLP)", min=1)
    eval_batch_size: int = option("evaluation batch columns (NAS-Bench-NLP)", min=1)
    bptt: int = option("base training window (NAS-Bench-NLP)", min=1)
    eval_bptt: int = option("evaluation window (NAS-Bench-NLP)", min=1)
    variable_bptt: Any = group("AWD-LSTM variable-length windows")
    train_eval_batches: Optional[int] = option("evaluate the train split on its first N windows (null: all)", min=1)
    datamodule: Any = group("the NAS-Bench-NLP training data, built from the options above")
    eval_initial: bool = option("evaluate the untrained model too (epoch 0)")
    hparams: Any = group("training hyperparameters overriding the benchmark log's (null: the log's)")
    hparam_defaults: Any = group("hyperparameters when the log has none")


@dataclass
class AnalyzeConfig:
    """``conf/analyze.yaml``."""

    paths: Any = group("where data is read and results are found (conf/paths/)")
    search: Any = group("search with a budget: simulation on ground truth, proposals (conf/search/)")
    results_dir: Any = option("a folder of records, or a list of folders (default: results)")
    out_dir: str = option("tables, figures, summary.md (default: <results_dir>/analysis)")
    data_dir: str = option("the data folder (for the NAS-Bench-BERT benchmark file)")
    where: Any = group("keep only records whose settings match, e.g. +where.paper_compat=true")
    targets: Any = option("ground-truth columns to correlate with (null: the space's)")
    main: Any = group("setting (seed, batch_index) of the main tables; null: the most common")
    bootstrap: int = option("bootstrap resamples for the confidence intervals (0: none)", min=0)
    ci: float = option("confidence level of the intervals", interval="(0, 1)")
    seed: int = option("seed of every resampling and draw", min=0)
    top_fraction: float = option("top-k overlap with k = top_fraction * n", interval="(0, 1]")
    combine: Any = option("lists of metrics to combine by rank (null: the top metrics)")
    combine_sizes: Any = option("with combine=null: combine the top 2, the top 3, ...", min=2, items=int)
    learned: Any = group("learned (ridge) combination, scored by cross-validation")
    folds: int = option("cross-validation folds", min=2)
    tensorboard: bool = option("write a TensorBoard summary")
    tensorboard_dir: Optional[str] = option("null: <out_dir>/tensorboard")
    space_view: Any = option("NAS-Bench-BERT search-space view", choices=("auto", True, False))
    benchmark_bert: Optional[str] = option("NAS-Bench-BERT benchmark file for the space view (null: skip)")
    space: Any = group("search-space view thresholds")
    plots: Any = group("figure formats, dpi, log scale")
    console_top: int = option("metrics shown on the console", min=0)


#: ``search.strategy`` and ``search.simulate.strategies`` (the keys of :data:`tfnas.search.strategies.STRATEGIES`,
#: written out here so that checking a command line loads no library; a test keeps them equal).
SEARCH_STRATEGIES = ("random", "top_metric", "combination", "learned", "ego")
#: ``plots.formats``: the file types matplotlib writes (a test keeps them among ``get_supported_filetypes``).
FIGURE_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "pgf", "jpg", "jpeg", "tif", "tiff", "webp")


@dataclass
class SimulateOptions:
    """``search.simulate`` of ``conf/search/default.yaml`` (checked by :func:`validate`, not a config of its own)."""

    enabled: Any = option("simulate the strategies on the records' ground truth", choices=("auto", True, False))
    min_archs: int = option("with enabled=auto: architectures with usable ground truth needed", min=2)
    strategies: Any = option("strategies simulated", choices=SEARCH_STRATEGIES, items=str)
    repeats: int = option("random pools", min=1)
    pool_fraction: float = option("each pool: this fraction of the usable architectures", interval="(0, 1]")
    max_budget: float = option("budgets 1 .. this fraction of the pool", interval="(0, 1]")
    tops: Any = option("the pool's top fractions to reach", interval="(0, 1]", items=float)
    ci: float = option("band over repeats", interval="(0, 1)")


@dataclass
class SearchOptions:
    """The ``search`` group (``conf/search/default.yaml``; checked by :func:`validate`)."""

    strategy: Optional[str] = option("strategy of the proposal (null: none)", choices=SEARCH_STRATEGIES)
    budget: int = option("trainings of the whole search", min=1)
    batch: int = option("architectures proposed per round", min=1)
    warm: int = option("learned / ego: the first round trains the top warm by metric", min=1)
    metric: Optional[str] = option("top_metric's metric and the warm start's (-name: lowest first)")
    combination: Optional[list] = option("the fixed rank combination's metrics", items=str)
    features: Optional[list] = option("learned / ego features", items=str)
    alpha: float = option("learned: ridge penalty", interval="[0, inf)")
    xi: float = option("ego: expected-improvement margin", interval="[0, inf)")
    seed: int = option("the strategies' random choices and the simulation's pools", min=0)
    truth: str = option("which architectures count as trained", choices=("train", "any"))
    train_overrides: Any = option("appended to the printed train.py command", items=str)
    simulate: Any = group("the search simulation")


@dataclass
class LearnedOptions:
    """``learned`` of ``conf/analyze.yaml`` (checked by :func:`validate`)."""

    enabled: bool = option("fit and cross-validate the learned combination")
    metrics: Optional[list] = option("its candidate metrics (null: every usable metric)", items=str)
    ridge: float = option("ridge penalty", interval="[0, inf)")
    top_m: int = option("cross-validated rank average of the training folds' top m", min=1)
    min_coverage: float = option("fraction of the architectures a metric must cover", interval="(0, 1]")
    references: Optional[list] = option("single metrics set against it", items=str)


@dataclass
class PlotsOptions:
    """``plots`` of ``conf/analyze.yaml`` (checked by :func:`validate`)."""

    formats: Any = option("figure file types", choices=FIGURE_FORMATS, items=str)
    dpi: int = option("raster resolution", min=1)
    log_ratio: float = option("log-scale x when a metric spans more than this ratio", interval="[1, inf)")


#: Schema -> {dotted name of a nested block of settings: its schema}; :func:`validate` and
#: :func:`check_overrides` check these blocks' values like the top-level options.
NESTED: dict = {
    AnalyzeConfig: {"search": SearchOptions, "search.simulate": SimulateOptions, "learned": LearnedOptions,
                      "plots": PlotsOptions},
}

#: Schema -> its options that are mappings with no fixed keys (``where``): a key is added with ``+where.<key>=...``.
OPEN_MAPPINGS: dict = {AnalyzeConfig: ("where",)}

#: Task name -> its schema; ``conf/<task>.yaml`` names ``<task>_schema`` first in its defaults list.
SCHEMAS: dict = {"score": ScoreConfig, "train": TrainConfig, "analyze": AnalyzeConfig}

for _name, _schema in SCHEMAS.items():
    ConfigStore.instance().store(name=f"{_name}_schema", node=_schema)


# ---------------------------------------------------------------------------- checking


@functools.lru_cache(maxsize=None)
def _fields(schema: type) -> dict:
    """Option name -> (type, metadata) of a schema."""
    hints = get_type_hints(schema)
    return {f.name: (hints[f.name], f.metadata) for f in dataclasses.fields(schema)}


def _base_type(tp: Any) -> tuple[Any, bool]:
    """``(T, optional)`` of ``T`` or ``Optional[T]``."""
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), True
    return tp, False


def override_value(value: Any) -> str:
    """A value as a Hydra override on the command line writes it: ``true``, ``null``, ``3``, ``abc``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _interval(text: str) -> tuple[float, float, bool, bool]:
    """``"(0, 1]"`` -> ``(0.0, 1.0, low included, high included)``."""
    low, high = (float(x) for x in text[1:-1].split(","))
    return low, high, text[0] == "[", text[-1] == "]"


def _in_interval(value: float, text: str) -> bool:
    low, high, low_in, high_in = _interval(text)
    return (low < value or low_in and value == low) and (value < high or high_in and value == high)


def _accepted_one(base: Any, meta: dict, key: str) -> str:
    """One value of an option (one item of a list option), in words."""
    if meta.get("choices"):
        return ", ".join(override_value(c) for c in meta["choices"])
    if base is bool:
        return "true or false"
    if base is int:
        return "an integer" + (f" >= {meta['min']}" if meta.get("min") is not None else "")
    if base is float:
        return "a number" + (f" in {meta['interval']}" if meta.get("interval") else "")
    if base is str:
        return "a path" if key.endswith(("_dir", "_path")) or key.startswith("benchmark") else "a string"
    return "a value"


def accepted(schema: type, key: str) -> str:
    """What option ``key`` of ``schema`` accepts, in words: ``an integer >= 0``, ``true or false``."""
    tp, meta = _fields(schema)[key]
    base, optional = _base_type(tp)
    if meta.get("items") is not None:
        one = _accepted_one(meta["items"], meta, key)
        if meta.get("choices"):
            text = f"a list of values among {one}"
        else:  # "an integer >= 2" -> "a list of integers >= 2"
            noun, _, rest = one.split(" ", 1)[1].partition(" ")
            text = f"a list of {noun}s" + (f" {rest}" if rest else "")
        return f"null or {text}" if optional else text
    text = _accepted_one(base, meta, key)
    return f"null or {text}" if optional else text


def _value_ok(base: Any, meta: dict, value: Any) -> bool:
    """``value`` (not None) is of type ``base`` and within ``meta``'s range or choices."""
    if meta.get("choices") is not None:
        return any(value == c and type(value) is type(c) for c in meta["choices"])
    if base is bool:
        return isinstance(value, bool)  # strict: OmegaConf would read 'no', 'off', 0 as false
    if base is int:
        return type(value) is int and (meta.get("min") is None or value >= meta["min"])
    if base is float:
        return type(value) in (int, float) and (not meta.get("interval") or _in_interval(value, meta["interval"]))
    if base is str:
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    return True


def check_value(schema: type, key: str, value: Any, name: Optional[str] = None) -> None:
    """Check one value of option ``key`` against its type and range; interpolations pass (see :func:`validate`).

    Args:
        name: the option's name in the message (default ``key``), e.g. ``search.budget`` for a nested block.

    Raises:
        ConfigError: ``<key> must be <accepted>, got <value>``.
    """
    tp, meta = _fields(schema)[key]
    if meta.get("group") or (isinstance(value, str) and "${" in value):
        return
    base, optional = _base_type(tp)
    if value is None:
        ok = optional or base is Any and meta.get("choices") is None and meta.get("items") is None
    elif meta.get("items") is not None:
        ok = isinstance(value, (list, tuple)) and all(
            (isinstance(v, str) and "${" in v) or (v is not None and _value_ok(meta["items"], meta, v)) for v in value)
    else:
        ok = _value_ok(base, meta, value)
    if not ok:
        shown = "[" + ",".join(override_value(v) for v in value) + "]" if isinstance(value, (list, tuple)) else override_value(value)
        raise ConfigError(f"{name or key} must be {accepted(schema, key)}, got {shown}")


def _nested_option(schema: type, key: str) -> Optional[tuple[type, str]]:
    """``(block schema, option)`` of a dotted ``key`` naming an option of a nested block (:data:`NESTED`)."""
    prefix, _, leaf = key.rpartition(".")
    block = NESTED.get(schema, {}).get(prefix)
    if block is not None and leaf in _fields(block):
        return block, leaf
    return None


def check_overrides(schema: type, args: Iterable[str]) -> None:
    """Check the command line's overrides of ``schema``'s options, every value of a sweep included.

    Arguments that are not overrides (flags such as ``-m``, ``--cfg job``),
    overrides of nested keys (``space.benchmark=...``, ``hydra.*``), additions
    (``+key=...``), deletions and anything Hydra's override parser rejects
    are left to Hydra.

    Raises:
        ConfigError: the first wrong value, e.g. ``arch must be an integer >= 0, got abc``,
            or a top-level key that is no option (``seeed=1``: ``did you mean seed?``).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    fields = _fields(schema)
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            override = parser.parse_override(arg)
        except Exception:  # Hydra reports its own syntax errors
            continue
        key = override.key_or_group
        if override.is_delete() or override.is_add() or override.is_force_add() or override.package is not None:
            continue
        head = key.split(".")[0]
        if head in OPEN_MAPPINGS.get(schema, ()) and key != head:
            raise ConfigError(f"{head} starts empty, so a key is added to it: +{arg}")
        target = (schema, key) if key in fields else _nested_option(schema, key)
        if key not in fields and target is None:
            if not any(c in key for c in "./@"):  # a misspelled option, not a nested key or a Hydra group
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ConfigError(f"no option {key!r}: {hint}(--help lists them; +{key}=... adds a new key)")
            continue
        if override.is_sweep_override():
            try:
                values = list(override.sweep_iterator())
            except Exception:  # interval sweeps and the like: for a sweeper plugin to judge
                continue
        else:
            values = [override.value()]
        for value in values:
            check_value(target[0], target[1], value, name=key)


def _check_block(cfg: Any, schema: type, prefix: str = "") -> None:
    """Check every option of ``schema`` present in ``cfg`` (a DictConfig or a plain mapping)."""
    for key, (tp, meta) in _fields(schema).items():
        if meta.get("group") or key not in cfg:
            continue
        try:
            value = cfg[key]
        except OmegaConfBaseException as exc:  # an interpolation that fails or gives a wrong type
            reason = str(exc).splitlines()[0]
            raise ConfigError(f"{prefix}{key} must be {accepted(schema, key)}: {reason}") from None
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        check_value(schema, key, value, name=prefix + key)


def validate(cfg: Any, schema: type) -> None:
    """Check the resolved options of ``cfg`` against ``schema`` at the start of a task, before any work.

    Reads every option (resolving its interpolation), checks its range and
    choices, those of the nested blocks of :data:`NESTED` too (``search.budget``,
    ``plots.formats``), for a training that its ``experiment`` is used with the
    space it was written for, and that this machine can run the settings
    (:func:`check_machine`: the Trainers' ``accelerator`` and ``devices``, a
    ``ckpt_path`` file).

    Args:
        cfg: the task's config (a DictConfig, or a plain mapping for the tasks' Python use).

    Raises:
        ConfigError: one line naming the option and the values it accepts.
    """
    _check_block(cfg, schema)
    for prefix, block in NESTED.get(schema, {}).items():
        node = _get_path(cfg, prefix)
        if node is not None and hasattr(node, "keys"):
            _check_block(node, block, prefix + ".")
    if "experiment" in _fields(schema):
        check_experiment(cfg)
    check_machine(cfg)


def check_experiment(cfg: DictConfig) -> None:
    """An ``experiment`` runs with the space it was written for (its ``experiment.space``).

    Raises:
        ConfigError: e.g. ``experiment=quick is the nasbench_nlp experiment; with
            space=nasbench_bert use experiment=quick_bert`` (every experiment's
            space is read from ``conf/experiment/``).
    """
    exp = cfg.get("experiment")
    if exp is None:
        return
    space = _space_name(cfg)
    if space is None or space == exp.space:
        return
    others = experiments()
    fits = [name for name, s in others.items() if s == space]
    instead = f"with space={space} use experiment={' or '.join(fits)}" if fits else f"no experiment is written for space={space}"
    listing = ", ".join(f"{name} for {s}" for name, s in others.items())
    raise ConfigError(f"experiment={exp.name} is written for space={exp.space}; {instead} (experiments: {listing})")


#: Where a task's Lightning Trainer settings are: ``trainer`` (score.py, NAS-Bench-NLP training) and each
#: training stage's own (``electra``, ``glue``: NAS-Bench-BERT; ``causal_lm``: LTS GPT-2).
TRAINER_KEYS = ("trainer", "electra.trainer", "glue.trainer", "causal_lm.trainer")


def _get_path(cfg: Any, dotted: str) -> Any:
    """``cfg``'s value at the dotted key (a DictConfig or a plain mapping); None where a part is absent."""
    node: Any = cfg
    for part in dotted.split("."):
        node = node.get(part) if hasattr(node, "get") else None
    return node


def check_machine(cfg: Any) -> None:
    """The run-level settings this machine must honour, checked before any work: a wrong one is
    the run's fault, not an architecture's, and must not become an error record of each.

    Every Trainer config of :data:`TRAINER_KEYS` present in ``cfg`` (:func:`check_trainer`), and
    ``ckpt_path`` (a training's), which must name an existing file.

    Raises:
        ConfigError: e.g. ``trainer.accelerator=gpu: torch sees no GPU on this machine ...``
            or ``ckpt_path=/x.ckpt: no such checkpoint file``.
    """
    for key in TRAINER_KEYS:
        try:
            trainer = _get_path(cfg, key)
            if trainer is None:
                continue
            trainer = OmegaConf.to_container(trainer, resolve=True) if OmegaConf.is_config(trainer) else trainer
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{key}: {str(exc).splitlines()[0]}") from None
        if isinstance(trainer, dict):
            check_trainer(trainer, key)
    ckpt = cfg.get("ckpt_path")
    if ckpt:
        from pathlib import Path

        if not Path(str(ckpt)).expanduser().is_file():
            raise ConfigError(f"ckpt_path={ckpt}: no such checkpoint file")


def check_trainer(trainer: dict, key: str = "trainer") -> None:
    """A Lightning Trainer config asks for an accelerator torch has here, and devices it has.

    ``accelerator``: ``auto`` always passes (Lightning picks what there is);
    ``gpu`` needs CUDA or MPS, ``cuda``, ``mps``, ``tpu`` their own; a name
    Lightning does not know fails too. ``devices`` is parsed as Lightning
    parses it for the CPU, CUDA or MPS accelerator it will get and must select
    exactly one device (``auto``: every GPU, or the CPU): ``devices=[1]`` on a
    machine with one GPU fails, and so does ``devices=4`` anywhere, where
    Lightning would start four processes (DDP), each a copy of the whole job.
    Lightning itself would raise these only inside the first architecture's ``Trainer``.

    Args:
        trainer: the Trainer's keyword arguments (resolved).
        key: where they are in the config (``trainer``, ``glue.trainer``), for the message.

    Raises:
        ConfigError: one line naming the setting, what this machine has and what to use instead.
    """
    accelerator = trainer.get("accelerator", "auto")
    if not isinstance(accelerator, str):  # an Accelerator instance: Lightning judges it
        return
    import torch
    from lightning.pytorch.accelerators import AcceleratorRegistry

    known = sorted(AcceleratorRegistry.available_accelerators())
    usable = [n for n in known if AcceleratorRegistry[n]["accelerator"].is_available()]
    name = accelerator
    if name == "auto":
        name = next((n for n in ("cuda", "mps") if n in usable), "cpu")  # what Lightning picks, TPUs aside
    elif name == "gpu":
        name = next((n for n in ("mps", "cuda") if n in usable), "")
        if not name:
            raise ConfigError(f"{key}.accelerator={accelerator}: torch sees no GPU on this machine "
                              f"(torch {torch.__version__}); use {key}.accelerator=auto (any GPU, else the CPU) "
                              f"or one of: {', '.join(usable)}")
    elif name not in known:
        raise ConfigError(f"{key}.accelerator must be auto, gpu or one of {', '.join(known)}, got {accelerator}")
    elif name not in usable:
        raise ConfigError(f"{key}.accelerator={accelerator}: not available on this machine (torch {torch.__version__}); "
                          f"use {key}.accelerator=auto or one of: {', '.join(usable)}")
    devices = trainer.get("devices", "auto")
    if name not in ("cpu", "cuda", "mps"):
        return
    has = f"; this machine has {torch.cuda.device_count()} CUDA device(s)" if name == "cuda" else ""
    if devices == "auto":
        count = torch.cuda.device_count() if name == "cuda" else 1
    else:
        try:
            if devices in ([], 0, "0"):
                raise ValueError("no device selected")
            parsed = AcceleratorRegistry[name]["accelerator"].parse_devices(devices)
        except Exception as exc:  # Lightning's MisconfigurationException, TypeError, ValueError
            raise ConfigError(f"{key}.devices={override_value(devices)}: not usable with the {name} accelerator{has} "
                              f"({' '.join(str(exc).split())})") from None
        count = len(parsed) if isinstance(parsed, (list, tuple)) else int(parsed)
    if count != 1:  # Lightning would start one process per device (DDP), each a copy of the whole job
        raise ConfigError(f"{key}.devices={override_value(devices)}: a job runs on one device, not {count} ({name}{has}); "
                          f"spread the jobs of a sweep over the devices instead (README: trainer.devices=${{tfnas_gpu:}})")


def _space_name(cfg: DictConfig) -> Optional[str]:
    """The ``space=`` name of a composed config: its ``_target_`` class's ``name``."""
    target = cfg.get("space", {}).get("_target_") if cfg.get("space") is not None else None
    if not target:
        return None
    from hydra.utils import get_class

    return getattr(get_class(target), "name", None)


def experiments() -> dict:
    """Experiment name -> the space it is written for, from ``conf/experiment/*.yaml``."""
    from tfnas.paths import REPO_ROOT

    out = {}
    for path in sorted((REPO_ROOT / "conf" / "experiment").glob("*.yaml")):
        info = OmegaConf.load(path).get("experiment") or {}
        out[path.stem] = info.get("space", "?")
    return out


def options_help(task: str) -> str:
    """The ``--help`` lines of ``task``'s options: ``name=<accepted>`` and its explanation, groups last."""
    schema = SCHEMAS[task]
    rows, groups = [], []
    for key, (_, meta) in _fields(schema).items():
        if meta.get("group"):
            groups.append(f"  {key + '.*':<22} {meta['help']}")
        else:
            rows.append(f"  {key:<22} {meta['help']} [{accepted(schema, key)}]")
    return "\n".join(rows + [""] + groups)


__all__ = ["AnalyzeConfig", "ConfigError", "FIGURE_FORMATS", "NESTED", "SEARCH_STRATEGIES", "ScoreConfig", "SCHEMAS",
           "TrainConfig", "accepted", "check_machine", "check_overrides", "check_trainer", "check_value", "experiments",
           "options_help", "override_value", "validate"]
