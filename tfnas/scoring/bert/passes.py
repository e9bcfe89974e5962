"""The BERT family's one pass for the paper's metrics: forward, then backward of Σ o (docs/METRICS.md, "BERT space").

``o = model(**batch).last_hidden_state`` [B, S, H]; ``o.backward(ones_like(o))``.
Forward hooks capture, as they happen and reduced where possible so that a
128 × 512 batch stays cheap:

* the first sequence's output of every call of each feed-forward GELU [S, I];
* for each confidence projection (query, key, value, WMA's extra matrix, LT's
  input projection) the scalar mean over (batch, features) of the max over
  sequence positions of its output [B, S, out];
* for each attention softmax [B, heads, S, S] and each LT transform
  [B, heads, S, d] (softmax over d taken in the hook) the scalar mean of the
  max over the head axis.

After the backward, the pass keeps (W, ∂W) of the linears the weight metrics
read, and ∂ of the position-embedding table, then clears the model's grads.
The batch runs in chunks of at least 16 sequences whose gradients add up
(:func:`collect`; docs/METRICS.md, "Memory"), so that a 128 × 512 batch fits
in a few GB.

Which linears play which role (attribute names of
:mod:`tfnas.models.flexibert` blocks):

=========  ==========================  ================================  ===========================
block      token-mixing linears        head-importance projections       confidence projections
=========  ==========================  ================================  ===========================
SA         query key value [wma] dense query key value [wma]             query key value [wma]
DSC        query key value kernel      query key value conv_value        query key value
           conv_value dense
LT         input_projection            input_projection                  input_projection
=========  ==========================  ================================  ===========================

Compat (``paper_compat``): no attention mask is passed, and head importance
uses the paper's rule, "output size ≥ 128 among the operation's own linears"
(every mixing linear except ``dense``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from tfnas.scoring.api import ScoringContext, register_pass

#: Output-size threshold of the paper's head-importance rule (compat).
COMPAT_IMPORTANCE_MIN_OUT = 128
#: Tokens per chunk of the ``grad`` pass (16 sequences of 512): one chunk's graph is 1/8 of
#: the 128 × 512 batch's (docs/METRICS.md, "Memory").
MICRO_BATCH_TOKENS = 8192
#: Fewest sequences in a chunk of the ``grad`` pass (unless the whole batch has fewer). torch's
#: CPU convolution picks its algorithm by batch size: with one thread, DSC's pointwise (kernel 1)
#: key convolution runs through oneDNN from 16 sequences on and through a plain GEMM below, with
#: different float32 rounding. The paper's gradient metrics at initialisation are round-off (the
#: gradient of Σ of a LayerNorm output is 0 up to rounding: docs/METRICS.md, "GPT family"), so
#: any change of rounding in the forward changes them; chunks on the batch's side of that switch
#: keep every row's arithmetic, and so the scores, the same as the whole batch's.
MIN_CHUNK = 16

_IMPORTANCE = {
    "SA": ("query", "key", "value", "wma"),
    "DSC": ("query", "key", "value", "conv_value"),
    "LT": ("input_projection",),
}
_CONFIDENCE = {
    "SA": ("query", "key", "value", "wma"),
    "DSC": ("query", "key", "value"),
    "LT": ("input_projection",),
}

WeightGrad = tuple[str, torch.Tensor, torch.Tensor]


@dataclass
class BertGradOutputs:
    """What the ``grad`` pass leaves for the BERT metrics.

    Attributes:
        mixing: (name, W, ∂W) of every linear of every token-mixing block.
        feed_forward: (name, W, ∂W) of every feed-forward linear (dense in, extra, dense out).
        importance: (name, W, ∂W) of the head-importance projections (default
            list, or the compat rule).
        activations: first-sequence GELU outputs [S, I], one per call, in call order.
        confidence: per confidence projection, mean over (batch, features) of max over positions.
        softmax_confidence: per attention softmax / LT transform, mean of the max over heads.
        position_grad: ∂ of the position-embedding weight [max_positions, E].
        names: ``{"confidence": [...], "softmax_confidence": [...]}``, the module
            of each entry of those lists, in the order the forward reached them.
        hidden_states: each layer's output at the real tokens [tokens, H]
            (capture ``"hidden_states"``); None unless asked.
    """

    mixing: list[WeightGrad]
    feed_forward: list[WeightGrad]
    importance: list[WeightGrad]
    activations: list[torch.Tensor]
    confidence: list[float]
    softmax_confidence: list[float]
    position_grad: torch.Tensor
    names: dict[str, list[str]] = field(default_factory=dict)
    hidden_states: list[torch.Tensor] | None = None


def _linears(block: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in block.named_modules() if isinstance(m, nn.Linear)]


def encoder_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder's layers [FlexiBertLayer].

    Raises:
        TypeError: the model is not a :class:`~tfnas.models.flexibert.FlexiBertModel`.
    """
    try:
        return list(model.encoder.layer)
    except AttributeError:
        raise TypeError(f"BERT passes need a FlexiBertModel (encoder.layer), got {type(model).__name__}") from None


def importance_linears(block: nn.Module, paper_compat: bool) -> list[tuple[str, nn.Linear]]:
    """The head-importance projections of a token-mixing block (see the module table)."""
    if paper_compat:
        return [(n, m) for n, m in _linears(block) if n != "dense" and m.out_features >= COMPAT_IMPORTANCE_MIN_OUT]
    return [(n, getattr(block, n)) for n in _IMPORTANCE[block.operation_type] if getattr(block, n, None) is not None]


def confidence_linears(block: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The projections whose outputs feed head confidence (see the module table)."""
    return [(n, getattr(block, n)) for n in _CONFIDENCE[block.operation_type] if getattr(block, n, None) is not None]


def collect(
    model: nn.Module,
    batch: dict,
    paper_compat: bool = False,
    hidden_states: bool = False,
    micro_batch: int | None = None,
    min_chunk: int = MIN_CHUNK,
) -> BertGradOutputs:
    """Run the forward and the backward of Σ o once and gather the metrics' inputs.

    With ``micro_batch`` = m the batch runs as consecutive chunks of about m
    sequences (:func:`chunks`), each a forward and a backward of its own Σ o;
    the weight and position-embedding gradients accumulate in ``.grad``, the
    hooks' reductions accumulate as float64 sums divided by the batch's counts
    at the end, and the hidden states are concatenated in batch order. No
    operation of the model mixes sequences (eval mode; attention, convolutions
    and LT's transform act within a sequence), so ∂(Σ o)/∂θ is the sum of the
    chunks' gradients and every output equals the whole-batch pass up to the
    order of the float32 sums over chunks (docs/METRICS.md, "Memory"). Peak
    memory is that of one chunk's graph.

    Args:
        model: a :class:`~tfnas.models.flexibert.FlexiBertModel` (its grads are cleared first and after).
        batch: ``input_ids`` [B, S], optionally ``attention_mask`` and ``token_type_ids`` [B, S].
        paper_compat: pass no attention mask, and use the paper's head-importance rule.
        hidden_states: also keep each layer's output at the real tokens (``attention_mask`` 1).
        micro_batch: sequences per chunk (None or ≥ B: the whole batch at once); see :func:`chunks`.
        min_chunk: fewest sequences per chunk (:data:`MIN_CHUNK`; see :func:`chunks`).

    Returns:
        The :class:`BertGradOutputs`.

    Raises:
        TypeError: not a FlexiBERT model.
        ValueError: ``micro_batch`` or ``min_chunk`` < 1.
        RuntimeError: a parameter the metrics read received no gradient.
    """
    layers = encoder_layers(model)
    device = next(model.parameters()).device
    parts = chunks(batch["input_ids"].shape[0], micro_batch, min_chunk)
    activations: list[torch.Tensor] = []
    # Per hooked module, in call order: [name, float64 0-d sum, number of terms]. Reductions stay
    # 0-d tensors until the end: no device sync inside the forward.
    confidence: list[list] = []
    softmax_conf: list[list] = []
    chunk = {"index": 0, "calls": {}}
    handles = []

    def accumulate(store: list, name: str, value: torch.Tensor, count: int) -> None:
        # The k-th call of module ``name`` in this chunk adds to the k-th entry of that name.
        k = chunk["calls"].get(name, 0)
        chunk["calls"][name] = k + 1
        if chunk["index"] == 0:
            store.append([name, value, count])
        else:
            entry = store[[i for i, e in enumerate(store) if e[0] == name][k]]
            entry[1] = entry[1] + value
            entry[2] += count

    def keep_first_sequence(module, inputs, out):
        if chunk["index"] == 0:
            activations.append(out[0].detach().clone())

    def projection_confidence(name):
        def hook(module, inputs, out):
            # [b, S, out]: max over positions; summed over the chunk's sequences and features.
            m = out.detach().amax(dim=1)
            accumulate(confidence, name, m.sum(dtype=torch.float64), m.numel())

        return hook

    def attention_confidence(name):
        def hook(module, inputs, out):
            # [b, heads, S, S]: max over the head axis (as the paper did), summed over the rest.
            m = out.detach().amax(dim=1)
            accumulate(softmax_conf, name, m.sum(dtype=torch.float64), m.numel())

        return hook

    def transform_confidence(name):
        def hook(module, inputs, out):
            # LT: softmax of the transform over the head dimension [b, heads, S, d], then as attention.
            m = torch.softmax(out.detach(), dim=-1).amax(dim=1)
            accumulate(softmax_conf, name, m.sum(dtype=torch.float64), m.numel())

        return hook

    ids = batch["input_ids"].to(device)
    tt = batch.get("token_type_ids")
    tt = None if tt is None else tt.to(device)
    mask = batch.get("attention_mask")
    mask = None if mask is None else mask.to(device)
    states: list[list[torch.Tensor]] | None = None
    model.zero_grad(set_to_none=True)
    # Only the gradients the metrics read are computed: the other parameters (biases, LayerNorm
    # and embedding tables but the position table, the key convolutions, embeddings_project)
    # stop requiring grad for the pass. The gradients that flow are the same; their weight
    # products are skipped.
    read = [lin.weight for layer in layers for _, lin in _linears(layer.operation)]
    read += [lin.weight for layer in layers for lin in layer.feed_forward.ffn]
    read.append(model.embeddings.position_embeddings.weight)
    read_ids = {id(p) for p in read}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in read_ids]
    for p in frozen:
        p.requires_grad_(False)
    try:
        for i, layer in enumerate(layers):
            block = layer.operation
            handles.append(layer.feed_forward.act.register_forward_hook(keep_first_sequence))
            for name, lin in confidence_linears(block):
                handles.append(lin.register_forward_hook(projection_confidence(f"layer{i}.operation.{name}")))
            if block.operation_type == "LT":
                hook = transform_confidence(f"layer{i}.operation.transform")
                handles.append(block.transform.register_forward_hook(hook))
            else:
                handles.append(block.softmax.register_forward_hook(attention_confidence(f"layer{i}.operation.softmax")))

        for c, part in enumerate(parts):
            chunk["index"], chunk["calls"] = c, {}
            inputs = {"input_ids": ids[part]}
            if tt is not None:
                inputs["token_type_ids"] = tt[part]
            if not paper_compat and mask is not None:
                inputs["attention_mask"] = mask[part]
            result = model(**inputs, output_hidden_states=hidden_states)
            out = result.last_hidden_state
            out.backward(torch.ones_like(out))
            if hidden_states:
                real = None if mask is None else mask[part].bool()
                layer_states = [h.detach() if real is None else h.detach()[real] for h in result.hidden_states[1:]]
                if states is None:
                    states = [[h] for h in layer_states]
                else:
                    for kept, h in zip(states, layer_states):
                        kept.append(h)
            del result, out
    finally:
        for h in handles:
            h.remove()
        for p in frozen:
            p.requires_grad_(True)

    def weight_grads(pairs) -> list[WeightGrad]:
        res = []
        for name, lin in pairs:
            if lin.weight.grad is None:
                raise RuntimeError(f"{name}.weight received no gradient (frozen or unused parameter)")
            res.append((name, lin.weight.detach(), lin.weight.grad.detach()))
        return res

    mixing, ffn, importance = [], [], []
    for i, layer in enumerate(layers):
        block = layer.operation
        mixing += weight_grads((f"layer{i}.operation.{n}", m) for n, m in _linears(block))
        ffn += weight_grads((f"layer{i}.feed_forward.ffn.{j}", m) for j, m in enumerate(layer.feed_forward.ffn))
        importance += weight_grads((f"layer{i}.operation.{n}", m) for n, m in importance_linears(block, paper_compat))
    pos = model.embeddings.position_embeddings.weight
    if pos.grad is None:
        raise RuntimeError("the position-embedding weight received no gradient")
    position_grad = pos.grad.detach()
    # The tensors above are kept by reference; the model itself is left without grads.
    model.zero_grad(set_to_none=True)
    return BertGradOutputs(
        mixing,
        ffn,
        importance,
        activations,
        [(s / k).item() for _, s, k in confidence],
        [(s / k).item() for _, s, k in softmax_conf],
        position_grad,
        {"confidence": [e[0] for e in confidence], "softmax_confidence": [e[0] for e in softmax_conf]},
        None if states is None else [torch.cat(s) if len(s) > 1 else s[0] for s in states],
    )


@register_pass("bert", "grad", captures=("hidden_states",))
def grad_pass(ctx: ScoringContext) -> BertGradOutputs:
    """Engine pass ``("bert", "grad")``: :func:`collect` on the context's model and batch.

    Micro-batches of :func:`micro_batch_size` sequences; option ``micro_batch_tokens``
    (default :data:`MICRO_BATCH_TOKENS`) sets the tokens per chunk.
    """
    return collect(
        ctx.model,
        ctx.batch,
        ctx.paper_compat,
        hidden_states=ctx.wants("hidden_states"),
        micro_batch=context_micro_batch(ctx),
    )


def chunks(n: int, micro_batch: int | None, min_chunk: int = MIN_CHUNK) -> list[slice]:
    """Consecutive chunks of a batch of ``n`` sequences: ``max(micro_batch, min_chunk)`` each, and a
    last remainder shorter than ``min_chunk`` joined to the chunk before it.

    So no chunk has fewer than ``min_chunk`` sequences unless the whole batch has.

    Raises:
        ValueError: ``micro_batch`` or ``min_chunk`` < 1.
    """
    if micro_batch is not None and micro_batch < 1:
        raise ValueError(f"micro_batch must be a positive number of sequences, got {micro_batch}")
    if min_chunk < 1:
        raise ValueError(f"min_chunk must be a positive number of sequences, got {min_chunk}")
    step = n if micro_batch is None else max(micro_batch, min_chunk)
    starts = list(range(0, n, step)) or [0]
    if len(starts) > 1 and n - starts[-1] < min_chunk:
        starts.pop()
    return [slice(lo, hi) for lo, hi in zip(starts, starts[1:] + [n])]


def micro_batch_size(seq_len: int, tokens: int = MICRO_BATCH_TOKENS) -> int:
    """Sequences per chunk of the ``grad`` pass: ``max(1, tokens // seq_len)``.

    Raises:
        ValueError: ``tokens`` < 1.
    """
    if tokens < 1:
        raise ValueError(f"micro_batch_tokens must be positive, got {tokens}")
    return max(1, tokens // seq_len)


def context_micro_batch(ctx: ScoringContext) -> int:
    """Sequences per chunk for the context's batch [B, S]: :func:`micro_batch_size` of S and the
    pass option ``micro_batch_tokens`` (default :data:`MICRO_BATCH_TOKENS`).

    Raises:
        ValueError: ``micro_batch_tokens`` < 1.
    """
    tokens = int(ctx.options.get("micro_batch_tokens", MICRO_BATCH_TOKENS))
    return micro_batch_size(ctx.batch["input_ids"].shape[1], tokens)


def grad_pass_flops(config, batch: int, seq_len: int) -> dict[str, float]:
    """Floating-point operations of the ``grad`` pass (forward, then backward of Σ o) from the model's configuration.

    Counted per token (T = batch · seq_len tokens), with a multiply-add as 2
    operations: every ``nn.Linear`` in → out (2·in·out; ``embeddings_project``
    E → H when E ≠ H); SA's and DSC's attention products q kᵀ and p v
    (2 · 2 · S · width, width = H for SA, H/2 for DSC); DSC's depthwise key
    convolution (2 · H · k), its pointwise one (2 · H · H/2) and its dynamic
    convolution (2 · H/2 · k); LT's 2-D transform of each head's [S, d] block as
    5 N log₂ N per (sequence, head), N = S · d (the usual count of a complex FFT).
    The backward costs, per product, its forward once for the gradient of its
    input (needed everywhere, down to the position table) and once more for
    the gradient of its weight where the metrics read it (:func:`collect`
    computes no other): twice for the block and feed-forward linears and the
    attention and dynamic-convolution products, once for ``embeddings_project``
    and the key convolutions; once the forward's transforms. Element-wise work
    (softmax, GELU, LayerNorm, masks) is not counted.

    Args:
        config: a :class:`~tfnas.models.flexibert.FlexiBertConfig` (the model as built, compat included).
        batch: B, sequences.
        seq_len: S, tokens per sequence.

    Returns:
        ``{"matmul_forward", "matmul_backward", "fft_forward", "forward", "backward", "total"}`` in FLOPs.
    """
    s, hid, t = seq_len, config.hidden_size, batch * seq_len
    both = 0.0  # per token: products whose backward needs both gradients
    input_only = 0.0  # per token: products whose weight gradient nobody reads
    fft = 0.0
    if config.embedding_size != hid:
        input_only += 2 * config.embedding_size * hid
    for lay in config.layers:
        op, heads = lay["operation_type"], lay["num_operation_heads"]
        if op == "SA":
            n_proj = 5 if lay["operation_parameter"] == "WMA" else 4  # query key value [wma] dense
            both += n_proj * 2 * hid * hid + 2 * 2 * s * hid
        elif op == "LT":
            both += 2 * hid * hid
            n = s * (hid // heads)
            fft += batch * heads * 5 * n * math.log2(n)
        else:  # DSC: h/2 attention heads and h/2 convolution heads of size H/h, A = H/2
            k, hp = lay["operation_parameter"], heads // 2
            inner = hp * (hid // heads)
            both += 3 * 2 * hid * inner + 2 * inner * hp * k  # query key value, kernel
            input_only += 2 * hid * k + 2 * hid * inner  # key_conv: depthwise, pointwise
            both += 2 * hid * inner + 2 * inner * k  # conv_value, dynamic convolution
            both += 2 * 2 * s * inner + 2 * hid * hid  # attention, dense
        inner_ff, n_ff = lay["feed_forward_dimension"], lay["num_feed_forward"]
        both += 2 * (hid * inner_ff + (n_ff - 1) * inner_ff * inner_ff + inner_ff * hid)
    matmul_forward = (both + input_only) * t
    matmul_backward = (2 * both + input_only) * t
    forward, backward = matmul_forward + fft, matmul_backward + fft
    return {"matmul_forward": matmul_forward, "matmul_backward": matmul_backward, "fft_forward": fft,
            "forward": forward, "backward": backward, "total": forward + backward}
