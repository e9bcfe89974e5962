"""Backpropagation through time over a recorded NAS-Bench-NLP cell, without autograd.

The RNN ``grad`` pass needs the gradient of Σ y with respect to the layer
inputs (the Jacobian), to every state as it leaves its cell, and to the
stacked weight products (synaptic saliency), over a batch of 200 rows (the
clean batch and three noised copies). Autograd gets there, but on CPU a
large part of its time goes to bookkeeping and memory traffic: a graph node
per op, a fresh tensor per op, split gradients concatenated again. This
module walks the recorded forward (:class:`~tfnas.models.rnn_cell.LayerRecord`)
backwards instead, one step at a time, node by node in reverse topological
order, with each op's local derivative from the op table
(:data:`~tfnas.spaces.nasbench_nlp.ops.CELL_OPS`; the activations use the
aten backward kernels autograd itself uses). For an op with weights (linear)
the derivative gives each (node, input) block of the stacked product the
node's gradient, and one matrix product per block carries it to the source,
accumulated in place; for the blocks reading the layer input ``x`` the
product gradients of every step are kept and carried to the input by one
product over the whole sequence after the loop, as the forward hoists the x
products out of it.

The hidden tuple carries the gradient from step t+1 back to step t. The state
``h_new_0`` "as it leaves the cell" gets the layer output's gradient plus the
next step's ``h_prev_0`` gradient only (docs/METRICS.md, hidden synaptic saliency);
uses of ``h_new_0`` inside its own cell call add to the node's gradient after.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tfnas.models.rnn_cell import LayerRecord, RecurrentLayer, with_weight_tangent
from tfnas.spaces.nasbench_nlp.ops import CELL_OPS


@dataclass
class LayerGrads:
    """Gradients of one layer's backward.

    Attributes:
        inputs: ∂/∂ the layer input [seq, batch, input_size] (zeros if the cell ignores ``x``).
        leaving: ∂/∂ h_new_0 of steps 0 … seq−2 as it leaves the cell,
            [seq − 1, rows, hidden], first ``rows`` batch rows.
        products: for each requested source, ∂/∂ its stacked product at every
            step, first ``rows`` batch rows, [seq, rows, n_source · hidden]
            (block i = the i-th (node, input) pair reading the source, as in
            ``RecurrentLayer.blocks``; zero for blocks nothing reads).
    """

    inputs: Tensor
    leaving: Tensor
    products: dict[str, Tensor]


@torch.no_grad()
def layer_backward(
    layer: RecurrentLayer,
    record: LayerRecord,
    d_out: Tensor,
    rows: int | None = None,
    product_sources: tuple[str, ...] = (),
    weights: dict[str, Tensor] | None = None,
    weight_tangent: bool = False,
) -> LayerGrads:
    """Backward of ``Σ d_out ⊙ outputs`` through one recorded layer run.

    Args:
        layer: the layer that ran (its weights as they were in the forward; in
            eval mode, so no DropConnect).
        record: its :class:`LayerRecord`, recorded under ``torch.no_grad()``.
        d_out: [seq, batch, hidden] gradient with respect to the layer's
            outputs (h_new_0 at every step); may be an expanded view.
        rows: keep ``leaving`` for the first ``rows`` batch rows (None = all).
        product_sources: sources whose product gradients to return (first ``rows`` rows).
        weights: the stacked weights the forward ran with, named as in
            ``layer.named_parameters()`` (``"weights.from_<source>"``), when
            they were not the layer's own (a :func:`torch.func.functional_call`
            forward, e.g. with forward-mode dual tensors); None = the layer's.
        weight_tangent: the forward ran with ``CellCapture.weight_tangent``
            (plain weights standing for Ẇ = W): each product of a gradient with
            a weight block gets the matching tangent, ∂·W with tangent
            (∂ + ∂̇)·W (:func:`~tfnas.models.rnn_cell.with_weight_tangent`).

    Returns:
        :class:`LayerGrads`.

    Raises:
        ValueError: ``d_out`` does not match the record's shape; the layer is
            in training mode with DropConnect (the recorded forward used
            dropped weights that are gone).
    """
    seq, batch = record.inputs.shape[:2]
    h = layer.hidden_size
    if layer.training and layer.wdrop > 0:
        raise ValueError("layer_backward needs the layer in eval mode (DropConnect drew weights the record does not keep)")
    if tuple(d_out.shape) != (seq, batch, h):
        raise ValueError(f"d_out has shape {tuple(d_out.shape)}, the layer's outputs are {(seq, batch, h)}")
    rows = batch if rows is None else rows
    nodes, order = layer.recipe.nodes, layer.recipe.order
    # Weight blocks [hidden, size] by (node, input), for every source but x (whose blocks act
    # after the loop, stacked): gradients go through one block at a time, accumulated by addmm,
    # so no stacked gradient is copied together.
    block_w = {}
    for (name, j), (src, _) in layer.blocks.items():
        if src == "x":
            continue
        if weights is None:
            block_w[(name, j)] = layer.weight(name, j).detach()
        else:
            slot, block_rows = layer.weight_slot(name, j)
            block_w[(name, j)] = weights[slot][block_rows]
    width = {src: h * (1 + max(b for s, b in layer.blocks.values() if s == src)) for src in layer.sources}
    kept = {src: d_out.new_zeros(seq, rows, width[src]) for src in product_sources}
    # ∂ of the x products at every step and row: the input gradient is then one product over the
    # whole sequence after the loop, as the forward hoists the x products into one.
    d_px = None
    if "x" in width:
        d_px = kept["x"] if "x" in kept and rows == batch else d_out.new_zeros(seq, batch, width["x"])
    leaving = d_out.new_empty(max(seq - 1, 0), rows, h)
    carry: list[Tensor | None] = [None] * layer.num_hidden  # ∂/∂ h_new_k of this step, from step t+1
    operand = with_weight_tangent if weight_tangent else (lambda a: a)
    for t in reversed(range(seq)):
        values = record.steps[t]
        grads: dict[str, Tensor] = {}
        owned: set[str] = set()  # grads allocated here, which may be added into in place
        pending: dict[str, list[tuple[Tensor, Tensor]]] = {}  # source -> (weight block, product gradient)

        def add(name: str, g: Tensor) -> None:
            if name not in grads:
                grads[name] = g
            elif name in owned:
                grads[name].add_(g)
            else:
                grads[name] = grads[name] + g
                owned.add(name)

        def flush(src: str) -> None:
            # Every reader of ``src`` comes later in topological order, so its product gradient is whole now.
            for w, g in pending.pop(src, ()):
                if src in owned:
                    grads[src].addmm_(g, w)
                elif src in grads:
                    grads[src] = torch.addmm(grads[src], g, w)
                    owned.add(src)
                else:
                    grads[src] = g @ w
                    owned.add(src)

        leave = d_out[t] if carry[0] is None else d_out[t] + carry[0]
        if t < seq - 1:
            leaving[t].copy_(leave[:rows])
        add("h_new_0", leave)
        for k in range(1, layer.num_hidden):
            if carry[k] is not None:
                add(f"h_new_{k}", carry[k])
        for name in reversed(order):
            flush(name)
            g = grads.pop(name, None)
            if g is None:  # unused node, or nothing downstream
                continue
            node = nodes[name]
            op, ins = CELL_OPS[node.op], node.inputs
            if op.weights:
                # ∂ of each product W_j in_j; the forward's products are not recorded, and the derivative reads none.
                for j, (src, d) in enumerate(zip(ins, op.derivative(g, [None] * len(ins), values[name]))):
                    b = layer.blocks[(name, j)][1]
                    if src == "x":
                        d_px[t, :, b * h : (b + 1) * h] = d
                    else:
                        pending.setdefault(src, []).append((block_w[(name, j)], operand(d)))
                    if src in kept and kept[src] is not d_px:
                        kept[src][t, :, b * h : (b + 1) * h] = d[:rows]
            else:
                for src, d in zip(ins, op.derivative(g, [values[i] for i in ins], values[name])):
                    add(src, d)
        for k in range(layer.num_hidden):
            flush(f"h_prev_{k}")
            carry[k] = grads.get(f"h_prev_{k}")
    if d_px is None:  # the cell ignores x
        d_in = record.inputs.new_zeros(record.inputs.shape)
    else:
        name_x = layer.stacked_name("x")
        w_x = layer.get_parameter(name_x).detach() if weights is None else weights[name_x]
        d_in = (operand(d_px).reshape(seq * batch, -1) @ w_x).view(record.inputs.shape)
    return LayerGrads(d_in, leaving, kept)
