"""Random NAS-Bench-NLP cells drawn with the benchmark's procedure (docs/SPACES.md §1 steps 1-6).

:func:`generate_recipe` samples one cell, :class:`RecipeGenerator` is an
indexable, reproducible sequence of them, and :func:`check_sanity` applies
the generator's sanity rules. With a NumPy ``RandomState`` the draws replay
the benchmark's own and reproduce its logged cells; why the default is 13
intermediate slots rather than the published 7 is in
``docs/BENCHMARK_NOTES.md``.
"""

from __future__ import annotations

import random
from typing import Any, Iterator, Sequence

import numpy as np

from tfnas.spaces.nasbench_nlp.ops import CELL_OPS
from tfnas.spaces.nasbench_nlp.recipe import ACTIVATIONS, Recipe, RecipeError

#: Generator weights of the benchmark (docs/SPACES.md §1, steps 1-2), from the op table.
MAIN_OPS = tuple(name for name, op in CELL_OPS.items() if op.generator_weight)
MAIN_WEIGHTS = tuple(CELL_OPS[name].generator_weight for name in MAIN_OPS)
LINEAR_FAN_IN = (2, 3)
LINEAR_FAN_IN_WEIGHTS = (4, 1)
#: Intermediate node slots on top of T (docs/BENCHMARK_NOTES.md says why 13, not 7).
INTERMEDIATE_VERTICES = 13


def check_sanity(recipe: Recipe) -> None:
    """Apply the benchmark generator's sanity rules to a valid recipe.

    Rules (NAS-Bench-NLP's random-cell generator, docs/SPACES.md §1 step 6):
    ``x`` and every ``h_prev_k`` are used by some output, and no ``h_new_k``
    takes an ``h_prev_j`` directly as input. Hand-made cells may break them
    (the benchmark's GRU feeds ``h_prev_0`` straight into ``h_new_0``).

    Raises:
        RecipeError: naming the unused graph input or the offending output.
    """
    used = set(recipe.used_inputs())
    for name in recipe.graph_inputs:
        if name not in used:
            raise RecipeError(f"sanity: graph input {name!r} is not used by any output h_new_k", node=name)
    previous = set(recipe.graph_inputs[1:])
    for out in recipe.outputs:
        direct = [i for i in recipe.nodes[out].inputs if i in previous]
        if direct:
            raise RecipeError(
                f"sanity: output {out!r} takes previous hidden state(s) {direct} directly as input", node=out
            )


class _PyDraws:
    """Draws from a ``random.Random``."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def main_op(self) -> str:
        return self.rng.choices(MAIN_OPS, cum_weights=_MAIN_CUM)[0]

    def fan_in(self) -> int:
        return self.rng.choices(LINEAR_FAN_IN, cum_weights=_FAN_IN_CUM)[0]

    def activation(self) -> str:
        return self.rng.choice(ACTIVATIONS)

    def sample(self, population: list[str], k: int) -> list[str]:
        return self.rng.sample(population, k)


class _NumpyLegacyDraws:
    """Draws from a ``numpy.random.RandomState`` in the benchmark's call sequence.

    The benchmark drew every choice with ``np.random.choice`` on the legacy
    global generator, seeded once per cell; replaying the same calls on
    ``RandomState(seed)`` reproduces its cells exactly.
    """

    def __init__(self, rs: np.random.RandomState):
        self.rs = rs
        self.p_main = np.array(MAIN_WEIGHTS, dtype=float) / sum(MAIN_WEIGHTS)
        self.p_fan = np.array(LINEAR_FAN_IN_WEIGHTS, dtype=float) / sum(LINEAR_FAN_IN_WEIGHTS)
        self.p_act = np.ones(len(ACTIVATIONS)) / len(ACTIVATIONS)

    def main_op(self) -> str:
        return MAIN_OPS[self.rs.choice(len(MAIN_OPS), 1, p=self.p_main)[0]]

    def fan_in(self) -> int:
        return LINEAR_FAN_IN[self.rs.choice(len(LINEAR_FAN_IN), 1, p=self.p_fan)[0]]

    def activation(self) -> str:
        return ACTIVATIONS[self.rs.choice(len(ACTIVATIONS), 1, p=self.p_act)[0]]

    def sample(self, population: list[str], k: int) -> list[str]:
        return [population[i] for i in self.rs.choice(len(population), k, replace=False)]


def _draws(rng: random.Random | int | np.random.RandomState) -> _PyDraws | _NumpyLegacyDraws:
    if isinstance(rng, random.Random):
        return _PyDraws(rng)
    if isinstance(rng, bool):
        raise TypeError("rng must be a random.Random, an int seed or a numpy RandomState, got bool")
    if isinstance(rng, int):
        return _PyDraws(random.Random(rng))
    if isinstance(rng, np.random.RandomState):
        return _NumpyLegacyDraws(rng)
    raise TypeError(f"rng must be a random.Random, an int seed or a numpy RandomState, got {type(rng).__name__}")


_MAIN_CUM = tuple(sum(MAIN_WEIGHTS[: i + 1]) for i in range(len(MAIN_WEIGHTS)))
_FAN_IN_CUM = tuple(sum(LINEAR_FAN_IN_WEIGHTS[: i + 1]) for i in range(len(LINEAR_FAN_IN_WEIGHTS)))


def _draw_cell(num_hidden: int, slots: int, draw: _PyDraws | _NumpyLegacyDraws) -> dict[str, dict[str, Any]] | None:
    """One draw of steps 1-6 of docs/SPACES.md §1; None when step 6 rejects it."""
    prev = [f"h_prev_{k}" for k in range(num_hidden)]
    base = ["x"] + prev
    cell: dict[str, dict[str, Any]] = {}
    activations: list[str] = []
    i = 0
    while i < slots:
        op = draw.main_op()
        if CELL_OPS[op].weights:  # a linear node
            candidates = base + activations
            k = min(draw.fan_in(), len(candidates))
            cell[f"node_{i}"] = {"op": op, "input": draw.sample(candidates, k)}
            # The activation on a linear node always follows it, even past the last slot.
            cell[f"node_{i + 1}"] = {"op": draw.activation(), "input": [f"node_{i}"]}
            activations.append(f"node_{i + 1}")
            i += 2
        else:
            k = CELL_OPS[op].min_inputs  # the benchmark draws the fewest inputs the op takes
            candidates = prev + list(cell)  # never x
            if len(candidates) >= k:
                cell[f"node_{i}"] = {"op": op, "input": draw.sample(candidates, k)}
                i += 1
    # Step 4: rename T distinct nodes to the outputs; they move to the end, h_new_0 first, as in the logs.
    chosen = draw.sample(list(cell), num_hidden)
    rename = {old: f"h_new_{k}" for k, old in enumerate(chosen)}
    kept = {name: spec for name, spec in cell.items() if name not in rename}
    for old in chosen:
        kept[rename[old]] = cell[old]
    for spec in kept.values():
        spec["input"] = [rename.get(x, x) for x in spec["input"]]
    # Step 5: prune nodes no output depends on.
    outputs = list(rename.values())
    needed: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        if name in kept:
            stack.extend(kept[name]["input"])
    # Step 6, cheaply on the raw dict (generate_recipe re-checks the result with check_sanity).
    if any(b not in needed for b in base):
        return None
    if any(x in prev for out in outputs for x in kept[out]["input"]):
        return None
    return {name: spec for name, spec in kept.items() if name in needed}


def generate_recipe(
    num_hidden: int,
    rng: random.Random | int | np.random.RandomState,
    *,
    intermediate_vertices: int = INTERMEDIATE_VERTICES,
    max_tries: int = 100_000,
) -> Recipe:
    """Sample one random cell with the benchmark's procedure (docs/SPACES.md §1 steps 1-6).

    Draws are repeated until one passes :func:`check_sanity` (rejection).
    The node names follow the benchmark (``node_<slot>``, outputs last).
    The same ``rng`` state gives the same recipe. With a NumPy
    ``RandomState`` it reproduces the benchmark's cells (see ``rng``).

    Args:
        num_hidden: T, the hidden-tuple size (the benchmark used 1, 2, 3).
        rng: a ``random.Random`` (advanced in place), an int seed, or a
            ``numpy.random.RandomState``: then the draws replay the
            benchmark's own ``np.random.choice`` calls, and
            ``RandomState(s)`` gives the cell the benchmark drew with
            ``np.random.seed(s)`` (when that draw passed the sanity rules;
            for T >= 2 the benchmark's order of ``h_prev_k`` candidates
            followed Python's set order, which varied between its runs;
            here it is ``h_prev_0, h_prev_1, ...``).
        intermediate_vertices: node slots on top of T; T + this many slots
            are filled (docs/BENCHMARK_NOTES.md explains the default of 13).
        max_tries: give up after this many rejected draws.

    Returns:
        A valid :class:`Recipe` that passes :func:`check_sanity`, without unused nodes.

    Raises:
        ValueError: ``num_hidden`` < 1 or ``intermediate_vertices`` < 0.
        TypeError: ``rng`` of another type.
        RuntimeError: no draw passed the sanity rules in ``max_tries`` tries.
    """
    if isinstance(num_hidden, bool) or not isinstance(num_hidden, int) or num_hidden < 1:
        raise ValueError(f"num_hidden must be an int >= 1, got {num_hidden!r}")
    if intermediate_vertices < 0:
        raise ValueError(f"intermediate_vertices must be >= 0, got {intermediate_vertices}")
    draw = _draws(rng)
    slots = num_hidden + intermediate_vertices
    for _ in range(max_tries):
        cell = _draw_cell(num_hidden, slots, draw)
        if cell is None:
            continue
        recipe = Recipe(cell)
        check_sanity(recipe)  # never fails after _draw_cell's check; guards the two against drifting apart
        return recipe
    raise RuntimeError(
        f"no random cell with T={num_hidden}, {intermediate_vertices} intermediate slots passed the sanity "
        f"rules in {max_tries} draws"
    )


class RecipeGenerator:
    """A reproducible, indexable sequence of random cells.

    Recipe ``i`` has T = ``num_hidden[i % len(num_hidden)]`` and is drawn by
    :func:`generate_recipe` from a generator seeded with ``(seed, i)`` only,
    so ``gen[i]`` is the same for the same seed whatever else was drawn.

    Args:
        num_hidden: one T or a sequence of them, cycled over the indices.
        seed: the sequence's seed; different seeds give different recipes.
        intermediate_vertices: see :func:`generate_recipe`.

    Raises:
        ValueError: an empty ``num_hidden`` or a T < 1.
    """

    def __init__(
        self,
        num_hidden: int | Sequence[int] = (1, 2, 3),
        seed: int = 0,
        intermediate_vertices: int = INTERMEDIATE_VERTICES,
    ):
        ts = (num_hidden,) if isinstance(num_hidden, int) else tuple(num_hidden)
        if not ts or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in ts):
            raise ValueError(f"num_hidden must be an int >= 1 or a non-empty sequence of them, got {num_hidden!r}")
        self.num_hidden = ts
        self.seed = int(seed)
        self.intermediate_vertices = int(intermediate_vertices)

    def num_hidden_of(self, index: int) -> int:
        """T of recipe ``index``."""
        return self.num_hidden[index % len(self.num_hidden)]

    def __getitem__(self, index: int) -> Recipe:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise IndexError(f"generator index must be an int >= 0, got {index!r}")
        # A str seed is hashed with SHA-512 by random.Random: stable across runs and platforms.
        rng = random.Random(f"tfnas-nasbench-nlp/{self.seed}/{index}")
        return generate_recipe(self.num_hidden_of(index), rng, intermediate_vertices=self.intermediate_vertices)

    def __iter__(self) -> Iterator[Recipe]:
        i = 0
        while True:
            yield self[i]
            i += 1

    def take(self, n: int) -> list[Recipe]:
        """Recipes ``0 .. n-1``."""
        return [self[i] for i in range(n)]

