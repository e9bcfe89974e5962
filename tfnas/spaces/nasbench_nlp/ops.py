"""The ops of a NAS-Bench-NLP cell: one table, each op with its arity, forward and local derivative.

docs/SPACES.md §1 (Klyuchnikov et al., 2020). Node values are [batch, hidden]
tensors. Every place that needs an op reads this table, and no other module
names an op:

- recipe validation (:mod:`~tfnas.spaces.nasbench_nlp.recipe`): names and arity;
- the random-cell generator (:mod:`~tfnas.spaces.nasbench_nlp.generator`):
  which ops it draws, with which weights, in this order;
- the cell (:mod:`tfnas.models.rnn_cell`): :attr:`CellOp.forward`;
- the backward through time (:mod:`tfnas.scoring.rnn.bptt`): :attr:`CellOp.derivative`.

It lives beside the recipe, which the models import, and imports nothing of
tfnas, so the models, the recipe and the scoring passes all read it without
an import cycle.

``linear`` carries weights: the cell multiplies each input j by its own
W_j [hidden, size(in_j)] (stacked by source, see
:class:`~tfnas.models.rnn_cell.RecurrentLayer`) and adds the node's bias;
its forward here sums those products, and its derivative gives each product
the node's gradient (the cell and the backward handle W_j).

To add an op: one :class:`CellOp` row in :data:`CELL_OPS`. A new op with
weights also needs the cell's parameter layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: Negative slope of the leaky ReLU activation.
LEAKY_RELU_SLOPE = 0.01

Forward = Callable[[Sequence[Tensor]], Tensor]
#: ``derivative(g, inputs, out) -> [∂/∂ input_j]``: g = ∂/∂ out, inputs and out as in the forward.
Derivative = Callable[[Tensor, Sequence[Tensor], Tensor], list[Tensor]]


@dataclass(frozen=True)
class CellOp:
    """One op of the cell.

    Attributes:
        name: the op's name in recipes.
        min_inputs: fewest inputs.
        max_inputs: most inputs; None for no limit.
        forward: ``forward(inputs) -> out``, all [batch, hidden].
        derivative: ``derivative(g, inputs, out)`` -> the gradient of each input
            (in input order) given g = ∂/∂ out.
        activation: a unit nonlinearity (NASWOT reads its codes).
        weights: the cell gives each input a weight matrix (``linear``).
        generator_weight: weight of the op among the ops the benchmark's
            generator draws for a node (docs/SPACES.md §1 step 1; 0 = never drawn
            there; activations are drawn uniformly, after each linear node).
    """

    name: str
    min_inputs: int
    max_inputs: int | None
    forward: Forward
    derivative: Derivative
    activation: bool = False
    weights: bool = False
    generator_weight: int = 0

    def accepts(self, n: int) -> bool:
        """Whether the op takes ``n`` inputs."""
        return n >= self.min_inputs and (self.max_inputs is None or n <= self.max_inputs)

    @property
    def arity(self) -> str:
        """The number of inputs in words: ``"exactly 3"``, ``"at least 2"``."""
        if self.max_inputs == self.min_inputs:
            return f"exactly {self.min_inputs}"
        if self.max_inputs is None:
            return f"at least {self.min_inputs}"
        return f"{self.min_inputs} to {self.max_inputs}"


def _sum(args: Sequence[Tensor]) -> Tensor:
    out = args[0]
    for t in args[1:]:
        out = out + t
    return out


def _product(args: Sequence[Tensor]) -> Tensor:
    out = args[0]
    for t in args[1:]:
        out = out * t
    return out


def _sum_derivative(g: Tensor, args: Sequence[Tensor], out: Tensor) -> list[Tensor]:
    return [g] * len(args)


def _product_derivative(g: Tensor, args: Sequence[Tensor], out: Tensor) -> list[Tensor]:
    # Π of the other inputs (not out / a_i, which fails at zeros).
    return [g * _product([a for j, a in enumerate(args) if j != i]) for i in range(len(args))]


def _blend(args: Sequence[Tensor]) -> Tensor:
    a, b, c = args
    return a * b + (1 - a) * c


def _blend_derivative(g: Tensor, args: Sequence[Tensor], out: Tensor) -> list[Tensor]:
    a, b, c = args
    ga = g * a
    return [g * (b - c), ga, g - ga]


def _activation(name: str, fn: Callable[[Tensor], Tensor], backward: Callable[[Tensor, Tensor], Tensor]) -> CellOp:
    # The derivative reads the output, as the aten backward kernels autograd itself uses do.
    return CellOp(name, 1, 1, lambda args: fn(args[0]), lambda g, args, out: [backward(g, out)], activation=True)


#: Every op a node may use, by name. The order is the generator's draw order.
CELL_OPS: dict[str, CellOp] = {
    op.name: op
    for op in (
        CellOp("linear", 1, None, _sum, _sum_derivative, weights=True, generator_weight=3),
        CellOp("blend", 3, 3, _blend, _blend_derivative, generator_weight=1),
        CellOp("elementwise_prod", 2, None, _product, _product_derivative, generator_weight=1),
        CellOp("elementwise_sum", 2, None, _sum, _sum_derivative, generator_weight=1),
        _activation("activation_tanh", torch.tanh, torch.ops.aten.tanh_backward),
        _activation("activation_sigm", torch.sigmoid, torch.ops.aten.sigmoid_backward),
        # leaky_relu(v) > 0 exactly when v > 0, so the output stands in for the input.
        _activation(
            "activation_leaky_relu",
            lambda t: F.leaky_relu(t, LEAKY_RELU_SLOPE),
            lambda g, out: torch.ops.aten.leaky_relu_backward(g, out, LEAKY_RELU_SLOPE, True),
        ),
    )
}
