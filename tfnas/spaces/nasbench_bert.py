"""NAS-Bench-BERT: FlexiBERT-style ELECTRA encoders (Serianni & Kalita, ACL 2023).

The benchmark (``BERT_benchmark.json``) holds 500 architectures, each a hidden
size and a list of 2 or 4 heterogeneous encoder layers, with the GLUE dev scores
of the ELECTRA-small-style model pretrained and fine-tuned with it. The search
space (``search_space.json``) defines the allowed values.

An architecture's ``spec`` is the normalised configuration::

    {"hidden_size": 256,
     "layers": [{"operation_type": "SA", "operation_parameter": "WMA",
                 "num_operation_heads": 4, "feed_forward_dimension": 1024,
                 "num_feed_forward": 3}, ...]}

with ``operation_parameter`` a str for SA (``SDP``/``WMA``) and LT
(``DFT``/``DCT``) and an int kernel size for DSC (5/9).

The model built from a spec is :class:`tfnas.models.flexibert.FlexiBertModel`
(see SPACES.md §2). In paper-compatibility mode every architecture is built
with H = 256 and I = 1024 and without attention mask, as the paper's metric
code did (METRICS.md, "Compat for BERT").
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from tfnas.models.flexibert import FlexiBertConfig, FlexiBertEmbeddings, FlexiBertLayer, FlexiBertModel, check_layer
from tfnas.paths import default_data_dir
from tfnas.spaces.base import Architecture, check_index

#: The benchmark's per-task GLUE keys, in its order.
GLUE_TASK_KEYS = ("cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst", "sts")
#: Ground-truth keys of ``scores`` in the benchmark (GLUE dev, ×100; ``glue`` is their mean).
SCORE_KEYS = GLUE_TASK_KEYS + ("glue",)
#: Fields of one encoder layer in a spec.
LAYER_FIELDS = (
    "operation_type",
    "operation_parameter",
    "num_operation_heads",
    "feed_forward_dimension",
    "num_feed_forward",
)
#: Sizes the paper's metric models used for every architecture (METRICS.md, compat).
COMPAT_HIDDEN_SIZE = 256
COMPAT_FEED_FORWARD_DIMENSION = 1024


def default_benchmark_path() -> Path:
    """``<data_dir>/nasbench_bert/BERT_benchmark.json``."""
    return default_data_dir() / "nasbench_bert" / "BERT_benchmark.json"


def default_search_space_path() -> Path:
    """``<data_dir>/nasbench_bert/search_space.json``."""
    return default_data_dir() / "nasbench_bert" / "search_space.json"


@dataclass(frozen=True)
class SearchSpace:
    """The NAS-Bench-BERT search space, as ``search_space.json`` defines it.

    Attributes:
        hidden_sizes: allowed ``hidden_size`` values (128, 256).
        num_layers: allowed numbers of encoder layers (2, 4).
        operation_parameters: operation type -> its allowed parameters
            (``SA``: SDP/WMA, ``LT``: DFT/DCT, ``DSC``: kernel sizes 5/9).
        num_operation_heads: allowed heads per layer (2, 4).
        feed_forward_dimensions: allowed feed-forward sizes (512, 1024).
        num_feed_forwards: allowed numbers of stacked feed-forward layers (1, 3).
    """

    hidden_sizes: tuple[int, ...]
    num_layers: tuple[int, ...]
    operation_parameters: Mapping[str, tuple]
    num_operation_heads: tuple[int, ...]
    feed_forward_dimensions: tuple[int, ...]
    num_feed_forwards: tuple[int, ...]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "search space") -> "SearchSpace":
        """Parse the JSON object of ``search_space.json``.

        Raises:
            ValueError: a missing or malformed entry, named with ``where``.
        """
        try:
            layer = d["encoder_layer"]
            ops = tuple(str(o) for o in layer["operation_type"])
            params = {}
            for op in ops:
                # DSC parameters are kernel sizes: keep them as ints, the others as names.
                params[op] = tuple(_as_int(p, f"{where}: {op} parameter") if op == "DSC" else str(p) for p in layer[op])
            return cls(
                hidden_sizes=tuple(_as_int(v, f"{where}: hidden_size") for v in d["hidden_size"]),
                num_layers=tuple(_as_int(v, f"{where}: num_encoder_layers") for v in d["num_encoder_layers"]),
                operation_parameters=params,
                num_operation_heads=tuple(
                    _as_int(v, f"{where}: num_operation_heads") for v in layer["num_operation_heads"]
                ),
                feed_forward_dimensions=tuple(
                    _as_int(v, f"{where}: feed_forward_dimension") for v in layer["feed_forward_dimension"]
                ),
                num_feed_forwards=tuple(_as_int(v, f"{where}: num_feed_forward") for v in layer["num_feed_forward"]),
            )
        except KeyError as exc:
            raise ValueError(f"{where}: missing key {exc.args[0]!r}") from None
        except TypeError as exc:
            raise ValueError(f"{where}: malformed ({exc})") from None

    def validate(self, raw: Mapping[str, Any], where: str) -> dict:
        """Check one configuration against the space and return its normalised spec.

        Args:
            raw: ``{"hidden_size": ..., "layers": [layer dict, ...]}``; also
                accepts the benchmark's ``{"hidden_size", "nas_config":
                {"encoder_layers": [...]}}`` form.
            where: names the configuration in error messages (e.g. "entry 17 (id 17)").

        Returns:
            The spec with ints for sizes, counts and DSC kernels, and str names.

        Raises:
            ValueError: naming ``where`` and the offending field and value.
        """
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: configuration must be a dict, got {type(raw).__name__}")
        if "layers" in raw:
            layers = raw["layers"]
        elif "nas_config" in raw:
            layers = (raw["nas_config"] or {}).get("encoder_layers")
        else:
            raise ValueError(f"{where}: no 'layers' (or 'nas_config.encoder_layers') in the configuration")
        if "hidden_size" not in raw:
            raise ValueError(f"{where}: no 'hidden_size' in the configuration")
        hidden = _as_int(raw["hidden_size"], f"{where}: hidden_size")
        if hidden not in self.hidden_sizes:
            raise ValueError(f"{where}: hidden_size={hidden} is not in the search space {list(self.hidden_sizes)}")
        if not isinstance(layers, (list, tuple)):
            raise ValueError(f"{where}: the layer list must be a list, got {type(layers).__name__}")
        if len(layers) not in self.num_layers:
            raise ValueError(
                f"{where}: {len(layers)} encoder layers; the search space allows {list(self.num_layers)}"
            )
        return {
            "hidden_size": hidden,
            "layers": [self._layer(lay, f"{where}, layer {i}") for i, lay in enumerate(layers)],
        }

    def _layer(self, lay: Any, where: str) -> dict:
        if not isinstance(lay, Mapping):
            raise ValueError(f"{where}: must be a dict, got {type(lay).__name__}")
        missing = [f for f in LAYER_FIELDS if f not in lay]
        extra = [f for f in lay if f not in LAYER_FIELDS]
        if missing or extra:
            raise ValueError(
                f"{where}: missing fields {missing}, unknown fields {extra}; expected {list(LAYER_FIELDS)}"
            )
        op = lay["operation_type"]
        if op not in self.operation_parameters:
            raise ValueError(f"{where}: operation_type={op!r} is not one of {list(self.operation_parameters)}")
        allowed = self.operation_parameters[op]
        param = lay["operation_parameter"]
        param = _as_int(param, f"{where}: operation_parameter") if op == "DSC" else param
        if param not in allowed:
            raise ValueError(
                f"{where}: operation_parameter={param!r} is not valid for {op}; expected one of {list(allowed)}"
            )
        out = {"operation_type": str(op), "operation_parameter": param}
        for field, choices in (
            ("num_operation_heads", self.num_operation_heads),
            ("feed_forward_dimension", self.feed_forward_dimensions),
            ("num_feed_forward", self.num_feed_forwards),
        ):
            v = _as_int(lay[field], f"{where}: {field}")
            if v not in choices:
                raise ValueError(f"{where}: {field}={v} is not in the search space {list(choices)}")
            out[field] = v
        return out

    def sample(self, rng: np.random.Generator) -> dict:
        """Draw one configuration uniformly, field by field.

        The number of layers, the hidden size, and per layer the operation
        type, its parameter, heads, feed-forward size and count are each drawn
        uniformly and independently from their allowed values, in that order.

        Returns:
            A normalised spec (see :meth:`validate`).
        """
        def pick(choices):
            return choices[int(rng.integers(len(choices)))]

        n = pick(self.num_layers)
        hidden = pick(self.hidden_sizes)
        ops = list(self.operation_parameters)
        layers = []
        for _ in range(n):
            op = pick(ops)
            layers.append(
                {
                    "operation_type": op,
                    "operation_parameter": pick(self.operation_parameters[op]),
                    "num_operation_heads": pick(self.num_operation_heads),
                    "feed_forward_dimension": pick(self.feed_forward_dimensions),
                    "num_feed_forward": pick(self.num_feed_forwards),
                }
            )
        return {"hidden_size": hidden, "layers": layers}


def _as_int(v: Any, where: str) -> int:
    # Accept 9, 9.0 and "9" (JSON producers differ) but never bools or 9.5.
    if isinstance(v, bool):
        raise ValueError(f"{where}: expected an integer, got {v!r}")
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    raise ValueError(f"{where}: expected an integer, got {v!r}")


@lru_cache(maxsize=8)
def _load_search_space(path: str) -> SearchSpace:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"NAS-Bench-BERT search space not found: {p}")
    with open(p) as f:
        return SearchSpace.from_dict(json.load(f), where=str(p))


def load_search_space(path: str | Path | None = None) -> SearchSpace:
    """Read ``search_space.json`` (cached per path).

    Args:
        path: the file; defaults to ``<data_dir>/nasbench_bert/search_space.json``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: malformed content.
    """
    return _load_search_space(str(Path(path or default_search_space_path()).resolve()))


def _space_for(benchmark_path: Path, search_space: str | Path | None) -> SearchSpace:
    if search_space is not None:
        return load_search_space(search_space)
    sibling = benchmark_path.with_name("search_space.json")
    return load_search_space(sibling if sibling.is_file() else None)


@lru_cache(maxsize=8)
def _load_benchmark(path: str, space_path: str | None) -> tuple[Architecture, ...]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"NAS-Bench-BERT benchmark file not found: {p}")
    space = _space_for(p, space_path)
    with open(p) as f:
        entries = json.load(f)
    if not isinstance(entries, list):
        raise ValueError(f"{p}: expected a JSON list of architectures, got {type(entries).__name__}")
    archs = []
    for i, e in enumerate(entries):
        where = f"{p.name} entry {i}"
        if not isinstance(e, dict):
            raise ValueError(f"{where}: expected an object, got {type(e).__name__}")
        for key in ("id", "scores", "hparams"):
            if key not in e:
                raise ValueError(f"{where}: missing key {key!r}")
        if _as_int(e["id"], f"{where}: id") != i:
            # The arch index is the position in the file; the benchmark numbers its entries 0..499 in order.
            raise ValueError(f"{where}: id is {e['id']!r} but its position is {i}; the file is reordered or corrupt")
        where = f"{p.name} entry {i} (id {e['id']})"
        overrides = (e["hparams"] or {}).get("model_hparam_overrides")
        if overrides is None:
            raise ValueError(f"{where}: missing hparams.model_hparam_overrides")
        spec = space.validate(overrides, where)
        scores = e["scores"]
        missing = [k for k in SCORE_KEYS if k not in scores]
        if missing:
            raise ValueError(f"{where}: scores lack {missing}")
        truth = {k: float(scores[k]) for k in SCORE_KEYS}
        meta = {"hparams": e["hparams"], "time_to_train": e.get("time_to_train")}
        archs.append(Architecture(index=i, benchmark_id=str(e["id"]), spec=spec, truth=truth, meta=meta))
    return tuple(archs)


def load_benchmark(path: str | Path | None = None, search_space: str | Path | None = None) -> list[Architecture]:
    """Read and validate ``BERT_benchmark.json`` (cached per path).

    Args:
        path: the benchmark file; defaults to ``<data_dir>/nasbench_bert/BERT_benchmark.json``.
        search_space: ``search_space.json`` to validate against; defaults to
            the one next to ``path``, else the data folder's.

    Returns:
        One :class:`Architecture` per entry, ``index`` = position in the file,
        ``benchmark_id = str(id)``, ``spec`` the normalised configuration,
        ``truth`` the GLUE dev scores (``cola mnli mrpc qnli qqp rte sst sts
        glue``, floats, ×100), ``meta`` = ``{"hparams", "time_to_train"}``.
        The Architecture objects are shared between calls: do not mutate them.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an entry whose ``id`` differs from its position, or whose
            configuration is outside the search space (the message names the
            entry and the field).
    """
    p = str(Path(path or default_benchmark_path()).resolve())
    s = None if search_space is None else str(Path(search_space).resolve())
    return list(_load_benchmark(p, s))


def generate_config(rng: np.random.Generator, space: SearchSpace | None = None) -> dict:
    """Draw one configuration uniformly from the search space (see :meth:`SearchSpace.sample`).

    Args:
        rng: a NumPy ``Generator``; the same generator state gives the same configuration.
        space: the space; defaults to the data folder's ``search_space.json``.
    """
    return (space or load_search_space()).sample(rng)


class ConfigGenerator:
    """Reproducible stream of random NAS-Bench-BERT configurations.

    Args:
        seed: seed of the NumPy ``default_rng`` behind the stream: the same
            seed gives the same sequence of configurations.
        space: the search space (default: the data folder's).
    """

    def __init__(self, seed: int = 0, space: SearchSpace | None = None):
        self.seed = seed
        self.space = space or load_search_space()
        self._rng = np.random.default_rng(seed)

    def __call__(self) -> dict:
        """The next configuration of the stream."""
        return self.space.sample(self._rng)

    def take(self, n: int) -> list[dict]:
        """The next ``n`` configurations."""
        return [self() for _ in range(n)]


def model_config(spec: Mapping[str, Any], paper_compat: bool = False, **overrides: Any) -> FlexiBertConfig:
    """The :class:`FlexiBertConfig` of an architecture.

    Args:
        spec: a normalised spec (``hidden_size``, ``layers``).
        paper_compat: build as the paper's metric code did: H = 256 and
            I = 1024 for every layer, attention mask ignored.
        **overrides: further config fields (e.g. dropout probabilities).
    """
    layers = copy.deepcopy(list(spec["layers"]))
    hidden = int(spec["hidden_size"])
    if paper_compat:
        hidden = COMPAT_HIDDEN_SIZE
        for lay in layers:
            lay["feed_forward_dimension"] = COMPAT_FEED_FORWARD_DIMENSION
    return FlexiBertConfig(hidden_size=hidden, layers=layers, use_attention_mask=not paper_compat, **overrides)


class NasBenchBERT:
    """The NAS-Bench-BERT space: benchmark architectures and/or generated ones, by index.

    - ``benchmark`` given: the 500 entries of :func:`load_benchmark`, then
      ``generate`` random configurations appended after them.
    - ``benchmark=None`` and ``generate=N > 0`` (or ``benchmark=""``): only
      the N generated configurations.
    - ``benchmark=None`` and ``generate=0``: the data folder's benchmark.

    Generated architecture ``j`` is configuration ``j`` of
    ``ConfigGenerator(generator_seed)``: ``benchmark_id`` None, empty
    ``truth``, ``meta["name"] = "gen-<seed>-<j>"`` (same conventions as
    :class:`tfnas.spaces.nasbench_nlp.NasBenchNLP`).

    Args:
        benchmark: path of ``BERT_benchmark.json`` (see above).
        generate: number of generated configurations.
        generator_seed: seed of :class:`ConfigGenerator`.
        paper_compat: default of :meth:`build` and :meth:`num_params`.

    Raises:
        ValueError: a negative ``generate``, or an invalid benchmark file.
    """

    name = "nasbench_bert"
    metric_space = "bert"

    def __init__(
        self,
        benchmark: str | Path | None = None,
        generate: int = 0,
        generator_seed: int = 0,
        paper_compat: bool = False,
    ):
        if isinstance(generate, bool) or not isinstance(generate, int) or generate < 0:
            raise ValueError(f"generate must be an int >= 0, got {generate!r}")
        if benchmark is None and generate == 0:
            benchmark = default_benchmark_path()
        self.benchmark = None if benchmark in (None, "") else str(Path(benchmark).resolve())
        self.paper_compat = bool(paper_compat)
        archs = load_benchmark(self.benchmark) if self.benchmark else []
        start = len(archs)
        archs = archs + [
            Architecture(index=start + j, benchmark_id=None, spec=spec, meta={"name": f"gen-{generator_seed}-{j}"})
            for j, spec in enumerate(ConfigGenerator(generator_seed).take(generate))
        ]
        self._archs = archs

    def __len__(self) -> int:
        return len(self._archs)

    def __getitem__(self, index: int) -> Architecture:
        check_index(index, len(self), f"{self.name} ({len(self)} architectures)")
        return self._archs[index]

    def _compat(self, paper_compat: bool | None) -> bool:
        return self.paper_compat if paper_compat is None else bool(paper_compat)

    def build(self, arch: Architecture, seed: int = 0, paper_compat: bool | None = None) -> nn.Module:
        """Construct the untrained encoder of ``arch``.

        NumPy's legacy global generator and torch's generator are seeded with
        ``seed`` immediately before construction (METRICS.md, "BERT space"),
        so the weights are a function of (spec, seed, compat) only.

        Args:
            arch: an architecture of this space.
            seed: initialisation seed.
            paper_compat: override the space's default (None keeps it).

        Returns:
            A :class:`~tfnas.models.flexibert.FlexiBertModel` on CPU, in train
            mode (the scoring engine switches it to eval mode).
        """
        config = model_config(arch.spec, self._compat(paper_compat))
        np.random.seed(seed)
        torch.manual_seed(seed)
        return FlexiBertModel(config)

    def num_params(self, arch: Architecture, paper_compat: bool | None = None) -> int:
        """Number of parameters of ``arch``'s encoder, counted on the meta device (no memory, no init).

        Args:
            arch: an architecture of this space.
            paper_compat: count the paper's H = 256, I = 1024 model (None: the space's default).
        """
        return count_params(arch.spec, self._compat(paper_compat))


def count_params(spec: Mapping[str, Any], paper_compat: bool = False) -> int:
    """Parameters of the encoder of ``spec`` (all of them, as the paper's ``num_params``).

    Each part (embeddings with their E→H projection, each distinct layer) is
    built once on the ``meta`` device and its count cached, so counting all
    500 benchmark architectures takes well under a second.
    """
    config = model_config(spec, paper_compat)
    total = _embedding_params(config.hidden_size)
    for lay in config.layers:
        total += _layer_params(config.hidden_size, tuple(sorted(lay.items())))
    return total


@lru_cache(maxsize=None)
def _embedding_params(hidden: int) -> int:
    config = FlexiBertConfig(hidden_size=hidden)
    with torch.device("meta"):
        parts = [FlexiBertEmbeddings(config)]
        if config.embedding_size != hidden:
            parts.append(nn.Linear(config.embedding_size, hidden))
    return sum(p.numel() for m in parts for p in m.parameters())


@lru_cache(maxsize=None)
def _layer_params(hidden: int, layer: tuple) -> int:
    lay = dict(layer)
    config = FlexiBertConfig(hidden_size=hidden, layers=[lay])
    check_layer(lay, hidden, "layer")
    with torch.device("meta"):
        return sum(p.numel() for p in FlexiBertLayer(config, lay).parameters())
