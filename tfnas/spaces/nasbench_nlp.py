"""NAS-Bench-NLP: recurrent cells as recipes (Klyuchnikov et al., 2020).

A *recipe* is a dict ``node name -> {"op": str, "input": [names]}`` describing
one recurrent cell (SPACES.md §1). This module

- validates recipes (:class:`Recipe` and the :class:`RecipeError` family),
- samples random cells with the benchmark's procedure
  (:func:`generate_recipe`, :class:`RecipeGenerator`, :func:`check_sanity`),
- reads the benchmark's training logs (:func:`read_benchmark`), and
- exposes both as an indexed search space (:class:`NasBenchNLP`).

It builds no model: the cell and the language model around it live in
``tfnas.models``.

Benchmark reader conventions
----------------------------
Entries are sorted by (recipe id, experiment id), numerically, so ``arch=i``
names the same run whatever the order of the files in the archive.

*Runs that failed* (``status`` other than ``"OK"``, e.g. ``"loss is nan!"``) or
whose last test loss is not finite are kept, with ``truth["test_loss"]`` NaN
and ``meta["failed"] = True``: dropping them would shift every later index and
hide the fact that the cell diverged.

*Duplicate recipe ids* (the WikiText-2 logs hold two runs of recipe 1002429)
are kept as separate entries, each with its own experiment id; every entry
after the first of its recipe id gets ``meta["duplicate_of"]`` = the index of
that first entry. Scores of the two runs are then two samples of the same
architecture; analyses that want one value per architecture drop the entries
carrying ``duplicate_of``.

*Identical recipes under different ids* also occur (the benchmark generated
some cells twice: 53 entries of the WikiText-2 logs repeat an earlier entry's
recipe under another id). They are separate benchmark architectures and kept as such; each
repeat gets ``meta["same_recipe_as"]`` = the index of the first entry with
the same recipe.

Generator and the benchmark's procedure
---------------------------------------
SPACES.md §1 describes the generator with ``T + 7`` node slots. The
benchmark's cells come from ``T + 13`` slots: with a NumPy
``RandomState(seed)`` as ``rng``, :func:`generate_recipe` replays the
benchmark's draws and reproduces its logged cells node for node (e.g. seed
70 gives recipe 1000050, T = 1, 10 nodes; seed 296 gives 1012752, T = 3);
searching the first 6,000 to 12,000 seeds per T with 13 slots finds about
70 % of the logged random cells of 6 or more nodes, while 7 slots find
almost none (T = 1 cells with ``node_13`` cannot come from 8 slots at all). Hence
:data:`INTERMEDIATE_VERTICES` = 13; ``intermediate_vertices=7`` gives the
procedure as SPACES.md words it.

The WikiText-2 logs' random cells are not a uniform sample of the
generator's output, though. For T = 2 and 3 their cell sizes and op counts
match generated cells; the T = 1 cells are larger and hold about 4 times
fewer ``blend`` and ``elementwise_prod`` nodes (two-sample chi-square p from
1e-4 to 1e-8 for size, linear, activation and prod counts), with or without
removing duplicates, and over all T their activations are not uniform
(sigm 440, tanh 357, leaky_relu 271) although the generator draws them
uniformly. The benchmark chose which cells to train on WikiText-2 by a
criterion the logs do not record (stable training would fit).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import math
import random
import re
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from tfnas.paths import default_data_dir
from tfnas.spaces.base import Architecture, check_index

#: Every op a node may use (SPACES.md §1).
OPS = (
    "linear",
    "blend",
    "elementwise_prod",
    "elementwise_sum",
    "activation_tanh",
    "activation_sigm",
    "activation_leaky_relu",
)
ACTIVATIONS = ("activation_tanh", "activation_sigm", "activation_leaky_relu")
ELEMENTWISE = ("elementwise_prod", "elementwise_sum")

#: Recipe ids of the benchmark's hand-made cells: vanilla RNN, LSTM, GRU.
HANDMADE_RECIPE_IDS = ("1000000", "1000001", "1000002")

#: Generator weights of the benchmark (SPACES.md §1, steps 1-2).
MAIN_OPS = ("linear", "blend", "elementwise_prod", "elementwise_sum")
MAIN_WEIGHTS = (3, 1, 1, 1)
LINEAR_FAN_IN = (2, 3)
LINEAR_FAN_IN_WEIGHTS = (4, 1)
#: Intermediate node slots on top of T (see the module docstring for why 13, not 7).
INTERMEDIATE_VERTICES = 13

_OUTPUT_RE = re.compile(r"h_new_(\d+)")
_PREV_RE = re.compile(r"h_prev_(\d+)")
_LOG_RE = re.compile(r"log_stats_model_(\d+)_(.+)_(\d+)\.json")
#: Keys of a log that hold per-epoch curves or the recipe, not hyperparameters.
_NON_META_KEYS = ("recepie", "train_losses", "val_losses", "test_losses", "wall_times")
_REQUIRED_LOG_KEYS = ("recepie", "recepie_id", "test_losses", "val_losses", "status")


# --------------------------------------------------------------------------- errors


class RecipeError(ValueError):
    """A recipe that does not describe a valid cell.

    Attributes:
        node: name of the offending node (or graph input), None when the fault
            is not tied to one node (e.g. the recipe is not a dict).
    """

    def __init__(self, message: str, node: str | None = None):
        super().__init__(message)
        self.node = node


class UnknownOpError(RecipeError):
    """A node's ``op`` is not one of :data:`OPS`."""


class InputCountError(RecipeError):
    """A node has the wrong number of inputs for its op.

    blend: exactly 3; activations: exactly 1; linear: at least 1;
    elementwise_prod/sum: at least 2.
    """


class UnknownInputError(RecipeError):
    """A node's input is neither ``x``, an ``h_prev_k`` with k < T, nor a node.

    Attributes:
        input: the unknown input name.
    """

    def __init__(self, message: str, node: str | None = None, input: str | None = None):
        super().__init__(message, node)
        self.input = input


class CycleError(RecipeError):
    """The nodes' inputs form a cycle (a cell must be a DAG).

    Attributes:
        cycle: the node names along the cycle, first one repeated at the end.
    """

    def __init__(self, message: str, node: str | None = None, cycle: tuple[str, ...] = ()):
        super().__init__(message, node)
        self.cycle = cycle


class MissingOutputError(RecipeError):
    """Some ``h_new_k`` with k < T is missing (T = 1 + the largest k present)."""


class UnusedNodeWarning(UserWarning):
    """A recipe holds nodes that no ``h_new_k`` depends on (allowed, but likely a mistake)."""


# --------------------------------------------------------------------------- recipe


@dataclass(frozen=True)
class Node:
    """One node of a recipe.

    Attributes:
        name: the node's key in the recipe.
        op: one of :data:`OPS`.
        inputs: input names in the recipe's order (the order matters: blend
            is ``in0 * in1 + (1 - in0) * in2``, and a linear node's weights
            follow its inputs).
    """

    name: str
    op: str
    inputs: tuple[str, ...]


def _arity_ok(op: str, n: int) -> bool:
    if op == "blend":
        return n == 3
    if op in ACTIVATIONS:
        return n == 1
    if op == "linear":
        return n >= 1
    return n >= 2  # elementwise


_ARITY_TEXT = {
    "blend": "exactly 3",
    "linear": "at least 1",
    "elementwise_prod": "at least 2",
    "elementwise_sum": "at least 2",
    **{a: "exactly 1" for a in ACTIVATIONS},
}


class Recipe:
    """A validated NAS-Bench-NLP recipe (SPACES.md §1, "Recipe").

    Construction validates the recipe and raises the matching
    :class:`RecipeError` subclass, naming the offending node. Nodes that no
    output depends on are allowed: they are listed in :attr:`unused` and
    reported once with an :class:`UnusedNodeWarning`.

    Two recipes are equal (and hash equally) when they list the same nodes in
    the same order with the same ops and inputs. The order counts because it
    fixes the order in which a model initialises the nodes' weights.

    Args:
        nodes: ``name -> {"op": str, "input": [names]}`` in file order.

    Attributes:
        nodes: read-only mapping ``name -> Node`` in file order.
        num_hidden: T, the size of the hidden tuple: 1 + the largest k of
            the ``h_new_k`` keys.
        order: every node name, in a topological order (inputs first);
            among nodes that are ready at the same time, file order wins.
        unused: names of the nodes no ``h_new_k`` depends on, in file order.

    Raises:
        RecipeError: ``nodes`` is not a mapping of well-formed node dicts,
            or a node is named like a graph input (``x``, ``h_prev_k``).
        UnknownOpError, InputCountError, UnknownInputError, CycleError,
        MissingOutputError: see each class.
    """

    __slots__ = ("_nodes", "nodes", "num_hidden", "order", "unused", "_key", "_hash")

    def __init__(self, nodes: Mapping[str, Mapping[str, Any]]):
        if isinstance(nodes, Recipe):
            nodes = nodes.to_dict()
        if not isinstance(nodes, Mapping):
            raise RecipeError(f"a recipe must be a dict of nodes, got {type(nodes).__name__}")
        if not nodes:
            raise MissingOutputError("empty recipe: it needs at least the output node h_new_0", node="h_new_0")
        parsed: dict[str, Node] = {}
        for name, spec in nodes.items():
            parsed[name] = self._parse_node(name, spec)

        outs = [int(m.group(1)) for m in map(_OUTPUT_RE.fullmatch, parsed) if m]
        if not outs:
            raise MissingOutputError("recipe has no output node: h_new_0 is missing", node="h_new_0")
        num_hidden = 1 + max(outs)
        for k in range(num_hidden):
            if f"h_new_{k}" not in parsed:
                raise MissingOutputError(
                    f"output node h_new_{k} is missing (h_new_{num_hidden - 1} is present, so T = {num_hidden} "
                    f"and every h_new_0 .. h_new_{num_hidden - 1} must exist)",
                    node=f"h_new_{k}",
                )
        graph_inputs = {"x", *(f"h_prev_{k}" for k in range(num_hidden))}
        for node in parsed.values():
            for inp in node.inputs:
                if inp not in parsed and inp not in graph_inputs:
                    m = _PREV_RE.fullmatch(inp)
                    why = (
                        f"the hidden tuple has only T = {num_hidden} elements (h_prev_0 .. h_prev_{num_hidden - 1})"
                        if m
                        else "it is neither x, an h_prev_k, nor a node of the recipe"
                    )
                    raise UnknownInputError(
                        f"node {node.name!r} has unknown input {inp!r}: {why}", node=node.name, input=inp
                    )

        self._nodes = parsed
        self.nodes: Mapping[str, Node] = MappingProxyType(parsed)
        self.num_hidden = num_hidden
        self.order = self._topological_order(parsed)
        used = self._ancestors(parsed, [f"h_new_{k}" for k in range(num_hidden)])
        self.unused = tuple(n for n in parsed if n not in used)
        self._key = tuple((n.name, n.op, n.inputs) for n in parsed.values())
        self._hash = hash(self._key)
        if self.unused:
            warnings.warn(
                f"recipe has {len(self.unused)} node(s) that no output h_new_k depends on: {', '.join(self.unused)}",
                UnusedNodeWarning,
                stacklevel=2,
            )

    # -- construction helpers

    @staticmethod
    def _parse_node(name: Any, spec: Any) -> Node:
        if not isinstance(name, str) or not name:
            raise RecipeError(f"node names must be non-empty strings, got {name!r}", node=str(name))
        if name == "x" or _PREV_RE.fullmatch(name):
            raise RecipeError(f"node {name!r} is named like a graph input (x, h_prev_k); rename it", node=name)
        if not isinstance(spec, Mapping):
            raise RecipeError(
                f"node {name!r} must be a dict with 'op' and 'input', got {type(spec).__name__}", node=name
            )
        for key in ("op", "input"):
            if key not in spec:
                raise RecipeError(f"node {name!r} has no {key!r} entry", node=name)
        extra = sorted(set(spec) - {"op", "input"})
        if extra:
            raise RecipeError(f"node {name!r} has unknown entries {extra} (only 'op' and 'input' are allowed)", node=name)
        op, inputs = spec["op"], spec["input"]
        if not isinstance(op, str):
            raise RecipeError(f"node {name!r}: 'op' must be a string, got {op!r}", node=name)
        if op not in OPS:
            raise UnknownOpError(f"node {name!r} has unknown op {op!r}; known ops: {', '.join(OPS)}", node=name)
        if isinstance(inputs, str) or not isinstance(inputs, Sequence):
            raise RecipeError(f"node {name!r}: 'input' must be a list of names, got {inputs!r}", node=name)
        if not all(isinstance(i, str) for i in inputs):
            raise RecipeError(f"node {name!r}: every input must be a name (string), got {list(inputs)!r}", node=name)
        if not _arity_ok(op, len(inputs)):
            raise InputCountError(
                f"node {name!r}: op {op} takes {_ARITY_TEXT[op]} input(s), got {len(inputs)} {list(inputs)}",
                node=name,
            )
        return Node(name, op, tuple(inputs))

    @staticmethod
    def _topological_order(nodes: dict[str, Node]) -> tuple[str, ...]:
        position = {name: i for i, name in enumerate(nodes)}
        pending = {name: sum(1 for i in n.inputs if i in nodes) for name, n in nodes.items()}
        users: dict[str, list[str]] = {name: [] for name in nodes}
        for n in nodes.values():
            for i in n.inputs:
                if i in nodes:
                    users[i].append(n.name)
        ready = [position[name] for name, c in pending.items() if c == 0]
        heapq.heapify(ready)
        names = list(nodes)
        order: list[str] = []
        while ready:
            name = names[heapq.heappop(ready)]
            order.append(name)
            for u in users[name]:
                pending[u] -= 1
                if pending[u] == 0:
                    heapq.heappush(ready, position[u])
        if len(order) < len(nodes):
            cycle = Recipe._find_cycle(nodes, {n for n in nodes if pending[n] > 0})
            raise CycleError(
                f"recipe has a cycle through node {cycle[0]!r}: {' -> '.join(cycle)}", node=cycle[0], cycle=cycle
            )
        return tuple(order)

    @staticmethod
    def _find_cycle(nodes: dict[str, Node], stuck: set[str]) -> tuple[str, ...]:
        # Every stuck node has a stuck input, so walking stuck inputs must revisit a node.
        start = next(n for n in nodes if n in stuck)
        path, seen = [start], {start: 0}
        while True:
            nxt = next(i for i in nodes[path[-1]].inputs if i in stuck)
            if nxt in seen:
                cyc = path[seen[nxt] :]
                # Report it in data-flow order (input before the node that uses it).
                cyc = cyc[::-1]
                return tuple(cyc + [cyc[0]])
            seen[nxt] = len(path)
            path.append(nxt)

    @staticmethod
    def _ancestors(nodes: Mapping[str, Node], roots: Sequence[str]) -> set[str]:
        seen = set(roots)
        stack = list(roots)
        while stack:
            n = nodes.get(stack.pop())
            if n is None:
                continue
            for i in n.inputs:
                if i not in seen:
                    seen.add(i)
                    stack.append(i)
        return seen

    # -- public API

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        """Parse a recipe stored as a JSON string (the logs' ``recepie`` field).

        Raises:
            RecipeError: the text is not JSON, or not a valid recipe.
        """
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise RecipeError(f"recipe is not valid JSON: {e}") from e
        return cls(data)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The recipe as a plain dict in file order (``Recipe(r.to_dict()) == r``)."""
        return {n.name: {"op": n.op, "input": list(n.inputs)} for n in self._nodes.values()}

    def to_json(self) -> str:
        """The recipe as a JSON string, in file order, like the logs store it."""
        return json.dumps(self.to_dict())

    @property
    def graph_inputs(self) -> tuple[str, ...]:
        """``("x", "h_prev_0", ..., "h_prev_{T-1}")``."""
        return ("x",) + tuple(f"h_prev_{k}" for k in range(self.num_hidden))

    @property
    def outputs(self) -> tuple[str, ...]:
        """``("h_new_0", ..., "h_new_{T-1}")``; ``h_new_0`` is the layer's output."""
        return tuple(f"h_new_{k}" for k in range(self.num_hidden))

    def used_inputs(self) -> tuple[str, ...]:
        """Graph inputs (``x``, ``h_prev_k``) that some output depends on, in :attr:`graph_inputs` order."""
        anc = self._ancestors(self._nodes, self.outputs)
        return tuple(i for i in self.graph_inputs if i in anc)

    def op_counts(self) -> Counter:
        """Number of nodes per op (``Counter`` over :data:`OPS`)."""
        return Counter(n.op for n in self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Recipe):
            return NotImplemented
        return self._key == other._key

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        body = "; ".join(f"{n.name}={n.op}({', '.join(n.inputs)})" for n in self._nodes.values())
        if len(body) > 160:
            body = body[:157] + "..."
        return f"Recipe(T={self.num_hidden}, {len(self)} nodes: {body})"


# --------------------------------------------------------------------------- generator


@dataclasses.dataclass(frozen=True)
class InvalidRecipe:
    """Stands in for the recipe of a benchmark entry whose recipe failed validation.

    The reader keeps such entries (so indices stay stable and a sweep can
    record the error for that architecture alone); :meth:`NasBenchNLP.build`
    raises :class:`RecipeError` with :attr:`error`.

    Attributes:
        error: the validation message, naming the file and the node.
    """

    error: str
    unused: tuple = ()


def check_sanity(recipe: Recipe) -> None:
    """Apply the benchmark generator's sanity rules to a valid recipe.

    Rules (NAS-Bench-NLP's random-cell generator, SPACES.md §1 step 6):
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
    for out in recipe.outputs:
        direct = [i for i in recipe.nodes[out].inputs if _PREV_RE.fullmatch(i)]
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
    """One draw of steps 1-6 of SPACES.md §1; None when step 6 rejects it."""
    prev = [f"h_prev_{k}" for k in range(num_hidden)]
    base = ["x"] + prev
    cell: dict[str, dict[str, Any]] = {}
    activations: list[str] = []
    i = 0
    while i < slots:
        op = draw.main_op()
        if op == "linear":
            candidates = base + activations
            k = min(draw.fan_in(), len(candidates))
            cell[f"node_{i}"] = {"op": "linear", "input": draw.sample(candidates, k)}
            # The activation on a linear node always follows it, even past the last slot.
            cell[f"node_{i + 1}"] = {"op": draw.activation(), "input": [f"node_{i}"]}
            activations.append(f"node_{i + 1}")
            i += 2
        else:
            k = 3 if op == "blend" else 2
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
    """Sample one random cell with the benchmark's procedure (SPACES.md §1 steps 1-6).

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
            are filled (see the module docstring for the default of 13).
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


# --------------------------------------------------------------------------- benchmark reader


def default_benchmark_path() -> Path:
    """``<data_dir>/nasbench_nlp/train_logs_wikitext-2.zip``."""
    return default_data_dir() / "nasbench_nlp" / "train_logs_wikitext-2.zip"


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _last(seq: Any, what: str, where: str) -> float:
    if not isinstance(seq, list):
        raise ValueError(f"{where}: {what!r} must be a list of per-epoch losses, got {type(seq).__name__}")
    return _float(seq[-1]) if seq else math.nan


def parse_log(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Turn one parsed ``log_stats_model_*.json`` object into reader fields.

    Args:
        data: the JSON object of the log.
        where: the file's name, used in error messages.

    Returns:
        ``{"recipe_id": int, "experiment_id": int | None, "spec": Recipe,
        "truth": {...}, "meta": {...}}`` (see :func:`read_benchmark`).

    Raises:
        ValueError: a missing key or an invalid recipe, naming ``where``.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: a log must be a JSON object, got {type(data).__name__}")
    missing = [k for k in _REQUIRED_LOG_KEYS if k not in data]
    if missing:
        raise ValueError(f"{where}: not a NAS-Bench-NLP log, missing key(s) {missing}")
    try:
        recipe_id = int(data["recepie_id"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: recepie_id must be an integer, got {data['recepie_id']!r}") from None
    raw = data["recepie"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnusedNodeWarning)  # reported through Recipe.unused instead
            spec = Recipe.from_json(raw) if isinstance(raw, str) else Recipe(raw)
    except RecipeError as e:
        # One bad architecture must not make a whole benchmark unreadable: the
        # entry is kept with its error, which building it raises (and a sweep records).
        spec = InvalidRecipe(f"{where}: invalid recipe (recipe id {recipe_id}): {e}")
    status = str(data["status"])
    test_loss = _last(data["test_losses"], "test_losses", where)
    val_loss = _last(data["val_losses"], "val_losses", where)
    failed = status != "OK" or not math.isfinite(test_loss)
    if failed:
        test_loss = math.nan  # an unfinished run's last loss is not the 50-epoch ground truth
    test_ppl = math.nan if math.isnan(test_loss) else (math.exp(test_loss) if test_loss < 700 else math.inf)
    meta = {k: v for k, v in data.items() if k not in _NON_META_KEYS}
    meta["epochs_completed"] = len(data["test_losses"])
    meta["failed"] = failed
    wall = data.get("wall_times")
    if isinstance(wall, list):
        meta["wall_time_s"] = float(sum(_float(w) for w in wall))
    exp_id = data.get("experiment_id")
    try:
        exp_id = None if exp_id is None else int(exp_id)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: experiment_id must be an integer, got {exp_id!r}") from None
    return {
        "recipe_id": recipe_id,
        "experiment_id": exp_id,
        "spec": spec,
        "truth": {"test_loss": test_loss, "test_ppl": test_ppl, "val_loss": val_loss, "status": status},
        "meta": meta,
    }


def _entry_from_file(name: str, text: bytes | str, file_label: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{file_label}: not valid JSON ({e})") from e
    entry = parse_log(data, file_label)
    m = _LOG_RE.fullmatch(name)
    if m:
        file_recipe, file_exp = int(m.group(1)), int(m.group(3))
        if file_recipe != entry["recipe_id"]:
            raise ValueError(
                f"{file_label}: the file name says recipe {file_recipe} but the log says recepie_id {entry['recipe_id']}"
            )
        if entry["experiment_id"] is not None and entry["experiment_id"] != file_exp:
            raise ValueError(
                f"{file_label}: the file name says experiment {file_exp} but the log says {entry['experiment_id']}"
            )
        entry["experiment_id"] = file_exp
    entry["meta"]["experiment_id"] = entry["experiment_id"]
    entry["meta"]["file"] = file_label
    return entry


def _read_zip(path: Path) -> list[dict[str, Any]]:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: not a readable zip archive ({e})") from e
    entries = []
    with zf:
        for info in zf.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if info.is_dir() or info.filename.startswith("__MACOSX/") or not _LOG_RE.fullmatch(base):
                continue
            label = f"{path}:{info.filename}"
            entries.append(_entry_from_file(base, zf.read(info), label))
    if not entries:
        raise ValueError(f"{path}: the archive holds no log_stats_model_*.json file")
    return entries


def _read_dir(path: Path) -> list[dict[str, Any]]:
    files = sorted(p for p in path.rglob("log_stats_model_*.json") if p.is_file() and _LOG_RE.fullmatch(p.name))
    if not files:
        raise ValueError(f"{path}: the folder holds no log_stats_model_*.json file (searched recursively)")
    return [_entry_from_file(p.name, p.read_bytes(), str(p)) for p in files]


def _read_json(path: Path) -> list[dict[str, Any]]:
    """A JSON list of recipes (dicts or JSON strings), or a single log file."""
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if isinstance(data, Mapping):
        return [_entry_from_file(path.name, path.read_bytes(), str(path))]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of recipes or one log object, got {type(data).__name__}")
    entries = []
    for i, raw in enumerate(data):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnusedNodeWarning)
                spec = Recipe.from_json(raw) if isinstance(raw, str) else Recipe(raw)
        except RecipeError as e:
            spec = InvalidRecipe(f"{path}: recipe {i} is invalid: {e}")
        entries.append({"recipe_id": None, "experiment_id": None, "spec": spec, "truth": {},
                        "meta": {"position": i, "file": str(path)}})
    return entries


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> tuple[Architecture, ...]:
    p = Path(path)
    if p.is_dir():
        entries = _read_dir(p)
    elif zipfile.is_zipfile(p):
        entries = _read_zip(p)
    else:
        entries = _read_json(p)
    if entries and entries[0]["recipe_id"] is not None:
        entries.sort(key=lambda e: (e["recipe_id"], -1 if e["experiment_id"] is None else e["experiment_id"]))
    first_of_id: dict[int, int] = {}
    first_of_recipe: dict[Recipe, int] = {}
    archs = []
    for i, e in enumerate(entries):
        meta = e["meta"]
        rid = e["recipe_id"]
        if rid is not None:
            if rid in first_of_id:
                meta["duplicate_of"] = first_of_id[rid]
            else:
                first_of_id[rid] = i
                if e["spec"] in first_of_recipe:
                    meta["same_recipe_as"] = first_of_recipe[e["spec"]]
            first_of_recipe.setdefault(e["spec"], i)
        if e["spec"].unused:
            meta["unused_nodes"] = e["spec"].unused
        archs.append(Architecture(index=i, benchmark_id=None if rid is None else str(rid), spec=e["spec"],
                                  truth=e["truth"], meta=meta))
    return tuple(archs)


def _copy(a: Architecture) -> Architecture:
    # The parsed benchmark is cached: hand out copies so callers cannot corrupt it.
    return dataclasses.replace(a, truth=dict(a.truth), meta=dict(a.meta))


def _resolve(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists() and not p.is_absolute():
        alt = default_data_dir() / p
        if alt.exists():
            return alt.resolve()
    if not p.exists():
        where = "" if p.is_absolute() else f" (looked in {Path.cwd()} and {default_data_dir()})"
        raise FileNotFoundError(
            f"NAS-Bench-NLP benchmark not found: {p}{where}; set paths.data_dir or TFNAS_DATA_DIR to the folder "
            "that holds nasbench_nlp/ (the data README says where to download it)"
        )
    return p.resolve()


def read_benchmark(path: str | Path | None = None) -> list[Architecture]:
    """Read NAS-Bench-NLP training logs or a list of recipes (parsed once per file, then cached).

    Accepted inputs:

    (a) a zip of ``log_stats_model_<recipe id>_<date>_<experiment id>.json``
        files, at any depth inside the archive (e.g. the benchmark's
        ``train_logs_wikitext-2/logs.zip``, ``train_logs_single_run/logs.zip``);
    (b) a folder holding such files (searched recursively);
    (c) a JSON list of recipes (dicts or JSON strings), e.g.
        ``recepies_example.json``, or one log file.

    Entries of (a) and (b) are sorted by (recipe id, experiment id), so
    ``arch=i`` always names the same run; (c) keeps the file's order.
    Failed runs and duplicate recipe ids are kept, as the module docstring
    explains.

    Args:
        path: the file or folder; a relative path that does not exist is
            also looked up in the data folder. Default: the WikiText-2 logs
            of the data folder.

    Returns:
        One :class:`Architecture` per log, with

        - ``benchmark_id``: the recipe id as a str (None for a recipe list);
        - ``spec``: the :class:`Recipe`, keys in file order;
        - ``truth``: ``test_loss`` (last ``test_losses`` entry, nats per
          token), ``test_ppl`` = exp(test_loss), ``val_loss`` (last
          ``val_losses`` entry), ``status`` (the log's); ``test_loss`` and
          ``test_ppl`` are NaN for a failed run; empty for a recipe list;
        - ``meta``: every hyperparameter of the log (``emsize``, ``nhid``,
          ``nlayers``, ``dropout``, ``dropouth``, ``dropouti``, ``dropoute``,
          ``wdrop``, ``bptt``, ``batch_size``, ``lr``, ``wdecay``, ``epochs``,
          ``clip``, ``alpha``, ``beta``, ``num_params``, ...), plus
          ``experiment_id`` (from the file name), ``file``, ``failed``,
          ``epochs_completed``, ``wall_time_s``, and where they apply
          ``duplicate_of``, ``same_recipe_as``, ``unused_nodes``. A recipe
          list gives ``{"position", "file"}``.

        The list and its Architecture objects are fresh copies on each call.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a malformed log or recipe (the message names the file),
            or an archive/folder without logs.
    """
    p = _resolve(path if path is not None else default_benchmark_path())
    st = p.stat()
    return [_copy(a) for a in _load(str(p), st.st_mtime_ns, st.st_size)]


# --------------------------------------------------------------------------- space


class NasBenchNLP:
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
    metric_space = "rnn"

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
        self.benchmark = None if benchmark in (None, "") else str(_resolve(benchmark))
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
            return _copy(self._archs[index])
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
        return _copy(self._generated[j])

    def build(self, arch: Architecture, seed: int = 0, ntoken: int = 10_000, **overrides: Any) -> "torch.nn.Module":
        """The untrained language model of ``arch``, exactly as the benchmark built it.

        Seeds Python, NumPy and torch with ``seed`` immediately before
        construction on the CPU (METRICS.md "RNN space" setting), so the
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
        import numpy as np
        import torch

        from tfnas.models.awd_lm import AWDLanguageModel

        if isinstance(arch.spec, InvalidRecipe):
            raise RecipeError(arch.spec.error)
        settings = {**self.model, **overrides}
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
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
