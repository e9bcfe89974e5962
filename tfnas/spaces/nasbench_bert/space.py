"""The NAS-Bench-BERT search space by index, and the encoder of an architecture.

The model built from a spec is :class:`tfnas.models.flexibert.FlexiBertModel`
(see docs/SPACES.md §2). In paper-compatibility mode every architecture is built
with H = 256 and I = 1024 and without attention mask, as the paper's metric
code did (docs/METRICS.md, "Compat for BERT").
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from tfnas.models.flexibert import FlexiBertConfig, FlexiBertEmbeddings, FlexiBertLayer, FlexiBertModel, check_layer
from tfnas.rng import seed_all
from tfnas.spaces.base import Architecture, SearchSpace, check_index
from tfnas.spaces.nasbench_bert.benchmark import default_benchmark_path, definition_for, load_benchmark
from tfnas.spaces.nasbench_bert.definition import ConfigGenerator, SpaceDefinition, load_search_space

#: Sizes the paper's metric models used for every architecture (docs/METRICS.md, compat).
COMPAT_HIDDEN_SIZE = 256
COMPAT_FEED_FORWARD_DIMENSION = 1024


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


class NasBenchBERT(SearchSpace):
    """The NAS-Bench-BERT space: benchmark architectures and/or generated ones, by index.

    - ``benchmark`` given: the 500 entries of :func:`load_benchmark`, then
      ``generate`` random configurations appended after them.
    - ``benchmark=None`` and ``generate=N > 0`` (or ``benchmark=""``): only
      the N generated configurations.
    - ``benchmark=None`` and ``generate=0``: the data folder's benchmark.

    Generated architecture ``j`` is configuration ``j`` of
    ``ConfigGenerator(generator_seed)``: ``benchmark_id`` None, empty
    ``truth``, ``meta["name"] = "gen-<seed>-<j>"`` (same conventions as
    :class:`tfnas.spaces.nasbench_nlp.space.NasBenchNLP`).

    Args:
        benchmark: path of ``BERT_benchmark.json`` (see above).
        generate: number of generated configurations.
        generator_seed: seed of :class:`ConfigGenerator`.
        paper_compat: default of :meth:`build` and :meth:`num_params`.

    Raises:
        ValueError: a negative ``generate``, or an invalid benchmark file.
    """

    name = "nasbench_bert"
    family = "bert"
    metric_space = family  # the former name of `family`

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
        self._definition = None
        if generate:
            start = len(archs)
            archs = archs + [
                Architecture(index=start + j, benchmark_id=None, spec=spec, meta={"name": f"gen-{generator_seed}-{j}"})
                for j, spec in enumerate(ConfigGenerator(generator_seed, self.definition).take(generate))
            ]
        self._archs = archs

    @property
    def definition(self) -> SpaceDefinition:
        """The search space definition: the ``search_space.json`` beside the benchmark, else the data folder's."""
        if self._definition is None:
            self._definition = definition_for(Path(self.benchmark), None) if self.benchmark else load_search_space()
        return self._definition

    def __len__(self) -> int:
        return len(self._archs)

    def __getitem__(self, index: int) -> Architecture:
        check_index(index, len(self), f"{self.name} ({len(self)} architectures)")
        return self._archs[index]

    def normalize(self, spec: Mapping[str, Any]) -> dict:
        """``spec`` validated against the search space definition, in the normalised form of :attr:`Architecture.spec`.

        Raises:
            ValueError: naming the field outside the search space.
        """
        return self.definition.validate(spec, "architecture")

    def _compat(self, paper_compat: bool | None) -> bool:
        return self.paper_compat if paper_compat is None else bool(paper_compat)

    def build(self, arch: Architecture, seed: int = 0, paper_compat: bool | None = None) -> nn.Module:
        """Construct the untrained encoder of ``arch``.

        Python's, NumPy's legacy global and torch's generators are seeded with
        ``seed`` immediately before construction (:func:`tfnas.rng.seed_all`;
        docs/METRICS.md, "BERT space"), so the weights are a function of (spec,
        seed, compat) only.

        Args:
            arch: an architecture of this space.
            seed: initialisation seed.
            paper_compat: override the space's default (None keeps it).

        Returns:
            A :class:`~tfnas.models.flexibert.FlexiBertModel` on CPU, in train
            mode (the scoring engine switches it to eval mode).
        """
        config = model_config(arch.spec, self._compat(paper_compat))
        seed_all(seed)
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
