"""NAS-Bench-NLP recipes: the cell ops, validated recipes and their errors.

A *recipe* is a dict ``node name -> {"op": str, "input": [names]}`` describing
one recurrent cell (docs/SPACES.md §1). :class:`Recipe` validates one and raises the
matching :class:`RecipeError` subclass, naming the offending node. This module
is the one the models import: it knows nothing of benchmarks, generators or
models.
"""

from __future__ import annotations

import heapq
import json
import re
import warnings
from collections import Counter
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from tfnas.spaces.nasbench_nlp.ops import CELL_OPS

#: Every op a node may use (docs/SPACES.md §1): the names of :data:`~tfnas.spaces.nasbench_nlp.ops.CELL_OPS`.
OPS = tuple(CELL_OPS)
ACTIVATIONS = tuple(name for name, op in CELL_OPS.items() if op.activation)

_OUTPUT_RE = re.compile(r"h_new_(\d+)")
_PREV_RE = re.compile(r"h_prev_(\d+)")

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
    """A node has the wrong number of inputs for its op (:attr:`CellOp.arity <tfnas.spaces.nasbench_nlp.ops.CellOp.arity>`)."""


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


class Recipe:
    """A validated NAS-Bench-NLP recipe (docs/SPACES.md §1, "Recipe").

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
        if not CELL_OPS[op].accepts(len(inputs)):
            raise InputCountError(
                f"node {name!r}: op {op} takes {CELL_OPS[op].arity} input(s), got {len(inputs)} {list(inputs)}",
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


@dataclass(frozen=True)
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
