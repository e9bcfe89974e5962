"""The NAS-Bench-NLP search space: benchmark logs and/or generated cells, by index."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from tfnas.spaces.base import Architecture, SearchSpace, check_index
from tfnas.spaces.nasbench_nlp.benchmark import copy_architecture, default_benchmark_path, read_benchmark, resolve_path
from tfnas.spaces.nasbench_nlp.generator import INTERMEDIATE_VERTICES, RecipeGenerator
from tfnas.spaces.nasbench_nlp.recipe import InvalidRecipe, Recipe, RecipeError

if TYPE_CHECKING:
    import torch


class NasBenchNLP(SearchSpace):
    """The NAS-Bench-NLP space: benchmark logs and/or generated cells, by index.

    - ``benchmark`` given: the entries of :func:`read_benchmark`, then
      ``generate`` random cells appended after them.
    - ``benchmark=None`` and ``generate=N > 0`` (or ``benchmark=""``): only the
      N generated cells.
    - ``benchmark=None`` and ``generate=0``: the data folder's WikiText-2 logs.

    Benchmark entries follow :func:`read_benchmark`: sorted by (recipe id,
    experiment id); failed runs are kept with NaN ``test_loss`` and
    ``meta["failed"]``; a recipe id logged twice gives two entries, the
    second with ``meta["duplicate_of"]`` = the first one's index (drop
    those for one value per architecture); an identical recipe under
    another id carries ``meta["same_recipe_as"]``.

    Generated architecture ``j`` is recipe ``j`` of
    ``RecipeGenerator(num_hidden, generator_seed)``: ``benchmark_id`` None,
    empty ``truth``, ``meta["name"] = "gen-<seed>-<j>"``.

    Args:
        benchmark: logs zip/folder or recipe list (see :func:`read_benchmark`).
        generate: number of generated cells.
        num_hidden: T values of the generated cells, cycled (see
            :class:`RecipeGenerator`).
        generator_seed: seed of the generated cells.
        intermediate_vertices: generator slots on top of T.
        model: language-model settings (``emsize``, ``nhid``, ``nlayers``,
            ...) kept as ``self.model`` for the model builder; this class
            does not read them.

    Raises:
        ValueError: a negative ``generate``; see also :func:`read_benchmark`.
    """

    name = "nasbench_nlp"
    family = "rnn"
    metric_space = family  # the former name of `family`

    def __init__(
        self,
        benchmark: str | Path | None = None,
        generate: int = 0,
        num_hidden: int | Sequence[int] = (1, 2, 3),
        generator_seed: int = 0,
        intermediate_vertices: int = INTERMEDIATE_VERTICES,
        model: Mapping[str, Any] | None = None,
    ):
        if isinstance(generate, bool) or not isinstance(generate, int) or generate < 0:
            raise ValueError(f"generate must be an int >= 0, got {generate!r}")
        if benchmark is None and generate == 0:
            benchmark = default_benchmark_path()
        self.benchmark = None if benchmark in (None, "") else str(resolve_path(benchmark))
        self.generate = generate
        self.model = dict(model or {})
        self.generator = RecipeGenerator(num_hidden, generator_seed, intermediate_vertices)
        self._archs = read_benchmark(self.benchmark) if self.benchmark else []
        self._generated: dict[int, Architecture] = {}

    def __len__(self) -> int:
        return len(self._archs) + self.generate

    def __getitem__(self, index: int) -> Architecture:
        check_index(index, len(self), f"{self.name} ({self.describe_short()})")
        if index < len(self._archs):
            return copy_architecture(self._archs[index])
        j = index - len(self._archs)
        if j not in self._generated:
            g = self.generator
            self._generated[j] = Architecture(
                index=index,
                benchmark_id=None,
                spec=g[j],
                meta={
                    "name": f"gen-{g.seed}-{j}",
                    "generated": True,
                    "generator_seed": g.seed,
                    "generator_index": j,
                    "num_hidden": g.num_hidden_of(j),
                    "intermediate_vertices": g.intermediate_vertices,
                },
            )
        return copy_architecture(self._generated[j])

    def normalize(self, spec: Any) -> Recipe:
        """``spec`` (a :class:`Recipe`, its dict or its JSON string) as a validated :class:`Recipe`.

        Raises:
            RecipeError: not a valid recipe.
        """
        return Recipe.from_json(spec) if isinstance(spec, str) else Recipe(spec)

    def build(self, arch: Architecture, seed: int = 0, ntoken: int = 10_000, **overrides: Any) -> "torch.nn.Module":
        """The untrained language model of ``arch``, exactly as the benchmark built it.

        Seeds Python, NumPy and torch with ``seed`` immediately before
        construction on the CPU (docs/METRICS.md "RNN space" setting), so the
        weights equal the benchmark's for that seed.

        Args:
            arch: an architecture of this space.
            seed: construction seed.
            ntoken: vocabulary size; scoring always uses PTB's 10,000.
            **overrides: language-model settings on top of ``self.model``
                (``emsize``, ``nhid``, ``nlayers``, dropouts, ``wdrop``).

        Returns:
            An :class:`~tfnas.models.awd_lm.AWDLanguageModel` on the CPU, in train mode.
        """
        import torch

        from tfnas.models.awd_lm import AWDLanguageModel
        from tfnas.rng import seed_all

        if isinstance(arch.spec, InvalidRecipe):
            raise RecipeError(arch.spec.error)
        settings = {**self.model, **overrides}
        seed_all(seed)
        with torch.device("cpu"):
            return AWDLanguageModel(arch.spec, ntoken, **settings)

    def describe_short(self) -> str:
        parts = []
        if self.benchmark:
            parts.append(f"{len(self._archs)} from {Path(self.benchmark).name}")
        if self.generate:
            parts.append(f"{self.generate} generated with seed {self.generator.seed}")
        return ", ".join(parts) or "empty"

    def describe(self) -> dict[str, Any]:
        """Settings that define the space (for a config hash); file paths reduced to their names."""
        return {
            "name": self.name,
            "benchmark": Path(self.benchmark).name if self.benchmark else None,
            "generate": self.generate,
            "num_hidden": list(self.generator.num_hidden),
            "generator_seed": self.generator.seed,
            "intermediate_vertices": self.generator.intermediate_vertices,
        }

