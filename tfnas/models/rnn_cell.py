"""The NAS-Bench-NLP recurrent cell: a recipe graph run over time.

Semantics follow docs/SPACES.md §1 (Klyuchnikov et al., 2020, NAS-Bench-NLP): a
recipe maps node names to ops over ``x`` (the layer input), ``h_prev_k`` (the
previous hidden tuple) and other nodes; ``h_new_0 … h_new_{T-1}`` form the new
hidden tuple and ``h_new_0`` is the layer output. Each op's forward is read
from the op table :data:`~tfnas.spaces.nasbench_nlp.ops.CELL_OPS`; this module
adds the weights of the ops that have them.

Speed: instead of one matrix product per (linear node, input), the weights
that read the same *source* (``x``, an ``h_prev_k`` or a node) are stored as
one stacked matrix, so each source is multiplied once per step however many
linear nodes read it; the products with ``x`` are hoisted out of the time
loop into one large matrix product over the whole sequence, with the biases of
the nodes reading ``x`` folded in. The arithmetic is the same sums in another
order (float32 rounding differences only). The benchmark's per-matrix
initialisation draws are reproduced exactly (see :meth:`RecurrentLayer.benchmark_init`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import forward_ad

from tfnas.spaces.nasbench_nlp.ops import CELL_OPS
from tfnas.spaces.nasbench_nlp.recipe import Recipe


@dataclass
class CellCapture:
    """What a forward pass records for the training-free metrics.

    Attributes:
        activation_codes: when not None, every activation-node output ``a``
            [rows, hidden] of every cell call is appended as the boolean code
            ``a > 0`` (NASWOT, Mellor et al. 2021), for ``activation_distance``.
        input_codes: when not None, the same for every activation node's
            input z: ``z > 0``, the side of the unit (the NASWOT proxy).
        code_rows: keep codes of the first ``code_rows`` samples only (the
            clean part of a batch that also holds noised copies); None = all.
        layers: when not None, one :class:`LayerRecord` per layer run is
            appended: what a backward through time needs
            (:mod:`tfnas.scoring.rnn.bptt`). Record under ``torch.no_grad()``.
        states_only: record only ``h_prev_0`` of each step (what hidden
            covariance reads), so the other values are freed as they go.
        weight_tangent: run under :mod:`torch.autograd.forward_ad` with the
            weights' tangent being the weights themselves (Ẇ = W, GraSP's
            direction θ) while the weights passed in are plain tensors: each
            product W·a gets the tangent W·(a + ȧ) (:func:`with_weight_tangent`),
            one product where dual weights would cost two.
    """

    activation_codes: list[Tensor] | None = None
    input_codes: list[Tensor] | None = None
    code_rows: int | None = None
    layers: list[LayerRecord] | None = None
    states_only: bool = False
    weight_tangent: bool = False


def with_weight_tangent(a: Tensor) -> Tensor:
    """``a`` with its forward-mode tangent ȧ replaced by a + ȧ (ȧ = 0 when ``a`` has none).

    For a product P = W·a whose weight tangent is Ẇ = W, Ṗ = W·a + W·ȧ =
    W·(a + ȧ): multiplying the plain W by this dual tensor gives P and Ṗ with
    one product for the tangent. Call inside a :func:`torch.autograd.forward_ad.dual_level`.
    """
    primal, tangent = forward_ad.unpack_dual(a)
    return forward_ad.make_dual(primal, primal if tangent is None else primal + tangent)


@dataclass
class LayerRecord:
    """One layer's recorded forward.

    Attributes:
        inputs: the layer input ``x`` [seq, batch, input_size].
        steps: per step t, every value of the cell call: ``h_prev_k`` (the
            hidden tuple fed in; zeros at t = 0) and every node's output, each
            [batch, hidden].
    """

    inputs: Tensor
    steps: list[dict[str, Tensor]] = field(default_factory=list)


class RecurrentLayer(nn.Module):
    """One recurrent layer running a NAS-Bench-NLP cell over a sequence.

    Parameters: for every linear node, one bias [hidden] and one weight
    [hidden, size(in_j)] per input j. Weights are stored stacked by source:
    ``weight_<source>`` has shape [n_j * hidden, size(source)], block i being
    the weight of the i-th (node, input) pair that reads that source, in
    recipe key order. ``bias`` has shape [n_linear, hidden].

    Args:
        recipe: a validated :class:`~tfnas.spaces.nasbench_nlp.recipe.Recipe`.
        input_size: size of ``x``.
        hidden_size: size of every node and hidden-tuple element.
        wdrop: DropConnect probability on every weight whose source is not
            ``x`` (active in training mode only; no Parameter is re-created).
    """

    def __init__(self, recipe: Recipe, input_size: int, hidden_size: int, wdrop: float = 0.0):
        super().__init__()
        self.recipe = recipe
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.wdrop = wdrop
        self.num_hidden = recipe.num_hidden
        self.linear_nodes = [n.name for n in recipe.nodes.values() if CELL_OPS[n.op].weights]
        self._bias_row = {name: i for i, name in enumerate(self.linear_nodes)}
        # (node, input position) -> (source, block index within that source's stack)
        self.blocks: dict[tuple[str, int], tuple[str, int]] = {}
        self.sources: list[str] = []
        counts: dict[str, int] = {}
        for name in self.linear_nodes:
            for j, src in enumerate(recipe.nodes[name].inputs):
                if src not in counts:
                    counts[src] = 0
                    self.sources.append(src)
                self.blocks[(name, j)] = (src, counts[src])
                counts[src] += 1
        self.weights = nn.ParameterDict(
            {
                _key(src): nn.Parameter(torch.empty(counts[src] * hidden_size, self._size(src)))
                for src in self.sources
            }
        )
        self.bias = nn.Parameter(torch.empty(len(self.linear_nodes), hidden_size))
        # For each block of the stacked x weight, the node whose bias it carries (once per node).
        self._x_block_bias: list[str | None] = [None] * counts.get("x", 0)
        for name in self.linear_nodes:
            if "x" in recipe.nodes[name].inputs:
                self._x_block_bias[self.blocks[(name, recipe.nodes[name].inputs.index("x"))][1]] = name

    def _size(self, src: str) -> int:
        return self.input_size if src == "x" else self.hidden_size

    def weight(self, node: str, j: int) -> Tensor:
        """The weight [hidden, size(in_j)] of input ``j`` of linear node ``node`` (a view)."""
        src, b = self.blocks[(node, j)]
        h = self.hidden_size
        return self.weights[_key(src)][b * h : (b + 1) * h]

    def weight_slot(self, node: str, j: int) -> tuple[str, slice]:
        """Where the weight of input ``j`` of linear node ``node`` lives: the stacked
        parameter's name (as in ``named_parameters()``) and its rows."""
        src, b = self.blocks[(node, j)]
        h = self.hidden_size
        return self.stacked_name(src), slice(b * h, (b + 1) * h)

    def stacked_name(self, src: str) -> str:
        """The name (as in ``named_parameters()``) of the stacked weight of source ``src``."""
        return f"weights.{_key(src)}"

    def node_bias(self, node: str) -> Tensor:
        """The bias [hidden] of linear node ``node`` (a view)."""
        return self.bias[self._bias_row[node]]

    @torch.no_grad()
    def benchmark_init(self) -> None:
        """Reproduce the benchmark's random draws for this layer, in order.

        docs/METRICS.md "Reproduction facts", step 2: for each linear node in
        recipe key order, a Kaiming-uniform (a = √5) draw per weight matrix in
        input order, then a uniform bias draw with bound 1/√fan_in of its
        first weight; then one uniform(−1/√hidden, 1/√hidden) draw over every
        cell parameter, node by node, bias first, then weights in input
        order. The first round only advances the generator (its values are
        overwritten), but it must be drawn for later values to match.
        """
        h = self.hidden_size
        for name in self.linear_nodes:
            node = self.recipe.nodes[name]
            for src in node.inputs:
                bound = 1.0 / math.sqrt(self._size(src))  # kaiming_uniform(a=√5) bound
                torch.empty(h, self._size(src)).uniform_(-bound, bound)
            fan_in = self._size(node.inputs[0])
            torch.empty(h).uniform_(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        stdv = 1.0 / math.sqrt(h)
        for name in self.linear_nodes:
            self.node_bias(name).copy_(torch.empty(h).uniform_(-stdv, stdv))
            for j in range(len(self.recipe.nodes[name].inputs)):
                w = self.weight(name, j)
                w.copy_(torch.empty(w.shape).uniform_(-stdv, stdv))

    def init_hidden(self, batch_size: int, device=None, dtype=None) -> tuple[Tensor, ...]:
        """The zero hidden tuple: T tensors [batch, hidden]."""
        z = torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)
        return tuple(z for _ in range(self.num_hidden))

    def forward(
        self,
        inputs: Tensor,
        hidden: tuple[Tensor, ...] | None = None,
        capture: CellCapture | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Run the cell over the sequence.

        Args:
            inputs: [seq, batch, input_size].
            hidden: the initial hidden tuple (T tensors [batch, hidden]);
                zeros when None.
            capture: optional recorder for the training-free metrics.

        Returns:
            outputs [seq, batch, hidden] (``h_new_0`` at every step) and the
            final hidden tuple.
        """
        seq, bsz, _ = inputs.shape
        h = self.hidden_size
        if hidden is None:
            hidden = self.init_hidden(bsz, inputs.device, inputs.dtype)
        weights = {}
        for src in self.sources:
            w = self.weights[_key(src)]
            weights[src] = F.dropout(w, self.wdrop, True) if self.training and self.wdrop > 0 and src != "x" else w
        bias = self.bias
        record = None
        if capture is not None and capture.layers is not None:
            record = LayerRecord(inputs)
            capture.layers.append(record)
        nodes = self.recipe.nodes
        order = self.recipe.order
        hoisted = None
        operand = with_weight_tangent if capture is not None and capture.weight_tangent else (lambda a: a)
        if "x" in weights:
            # One product over all steps; the biases of x-reading nodes are folded in.
            wx = weights["x"]
            zero = wx.new_zeros(h)
            bias_x = torch.cat([bias[self._bias_row[n]] if n else zero for n in self._x_block_bias])
            hoisted = torch.addmm(bias_x, operand(inputs).reshape(seq * bsz, -1), wx.t()).view(seq, bsz, -1)
            # unbind, not hoisted[t]: the backward of one unbind stacks the step
            # gradients once, whereas each select's backward fills a zero tensor
            # of the whole sequence (quadratic in seq; over half of a backward).
            hoisted_steps = hoisted.unbind(0)
        codes = capture.activation_codes if capture is not None else None
        input_codes = capture.input_codes if capture is not None else None
        rows = capture.code_rows if capture is not None else None
        steps: list[Tensor] = []
        for t in range(seq):
            values: dict[str, Tensor] = {f"h_prev_{k}": hidden[k] for k in range(self.num_hidden)}
            products: dict[str, list[Tensor]] = {}
            if hoisted is not None:
                step_x = hoisted_steps[t]
                products["x"] = step_x.split(h, dim=1) if step_x.shape[1] > h else (step_x,)
            for name in order:
                node = nodes[name]
                op = CELL_OPS[node.op]
                if op.weights:
                    parts = []
                    for j, src in enumerate(node.inputs):
                        if src not in products:
                            full = operand(values[src]) @ weights[src].t()
                            # split only a stack: its backward concatenates the pieces' gradients
                            products[src] = full.split(h, dim=1) if full.shape[1] > h else (full,)
                        parts.append(products[src][self.blocks[(name, j)][1]])
                    out = op.forward(parts)  # Σ_j W_j in_j
                    if "x" not in node.inputs:
                        out = out + bias[self._bias_row[name]]
                else:
                    args = [values[i] for i in node.inputs]
                    out = op.forward(args)
                    if op.activation:
                        if codes is not None:
                            codes.append((out if rows is None else out[:rows]) > 0)
                        if input_codes is not None:
                            input_codes.append((args[0] if rows is None else args[0][:rows]) > 0)
                values[name] = out
            if record is not None:
                record.steps.append({"h_prev_0": values["h_prev_0"]} if capture.states_only else values)
            steps.append(values["h_new_0"])
            hidden = tuple(values[f"h_new_{k}"] for k in range(self.num_hidden))
        return torch.stack(steps), hidden


def _key(src: str) -> str:
    # ParameterDict keys must not contain '.'; source names are recipe identifiers.
    return f"from_{src}"
