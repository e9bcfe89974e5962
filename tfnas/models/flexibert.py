"""FlexiBERT-style ELECTRA discriminator encoder with heterogeneous layers.

Implements the NAS-Bench-BERT model of docs/SPACES.md §2 (FlexiBERT, Tuli et al.
2022; ELECTRA, Clark et al. 2020; ConvBERT, Jiang et al. 2020) with
transformers' ELECTRA conventions (``PretrainedConfig`` / ``PreTrainedModel``,
``BaseModelOutput``, ``save_pretrained`` / ``from_pretrained``).

Structure (H = ``hidden_size``, E = ``embedding_size``)::

    embeddings: word (V×E, padding row 0) + position (512×E) + token type (2×E),
                LayerNorm, dropout; then ``embeddings_project`` E→H when E ≠ H
    encoder.layer[i] = FlexiBertLayer(operation, feed_forward)
        operation    one of
          FlexiBertSelfAttention  (SA: SDP or WMA)      query key value [wma] softmax dense LayerNorm
          FlexiBertLinearTransform (LT: DFT or DCT)     input_projection transform
          FlexiBertConvAttention  (DSC: kernel 5 or 9)  query key value key_conv kernel conv_value
                                                        softmax dense LayerNorm
        feed_forward FlexiBertFeedForward               ffn[0..n] (ModuleList) act LayerNorm

Each layer dict of ``FlexiBertConfig.layers`` gives its operation, heads h,
feed-forward size I and count n, so that per-layer sizes (and a generator of
hidden size H/4 with smaller heads and I/4) are expressible.

Padding and attention masks: padded key positions are masked (additive
``finfo.min``) in the SA softmax and in the attention branch of DSC. The
other mixing operations see the padded length by design: LT's 2-D DFT/DCT
mixes over all positions of the sequence axis, and DSC's key convolution and
dynamic convolution read the neighbouring positions, padding included.
Therefore only SA-only models give the same outputs on the real tokens of a
padded batch as of the unpadded one. ``use_attention_mask=False`` (the
paper's code, docs/METRICS.md "Compat for BERT") ignores any mask.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

#: Operation types and their parameters (docs/SPACES.md §2).
OPERATIONS = {"SA": ("SDP", "WMA"), "LT": ("DFT", "DCT"), "DSC": None}  # DSC: any odd kernel size
_LAYER_KEYS = (
    "operation_type",
    "operation_parameter",
    "num_operation_heads",
    "feed_forward_dimension",
    "num_feed_forward",
)


class FlexiBertConfig(PretrainedConfig):
    """Configuration of :class:`FlexiBertModel`.

    Args:
        vocab_size: word-piece vocabulary size (BERT uncased: 30,522).
        embedding_size: E, size of the token/position/type embeddings (ELECTRA-small: 128).
        hidden_size: H, width of every encoder layer.
        layers: one dict per encoder layer with ``operation_type`` (SA, LT,
            DSC), ``operation_parameter`` (SDP/WMA, DFT/DCT, or an odd DSC
            kernel size), ``num_operation_heads`` h (H divisible by h; even
            for DSC, which uses h/2 attention heads), ``feed_forward_dimension``
            I and ``num_feed_forward`` n ≥ 1.
        max_position_embeddings: longest sequence (512).
        type_vocab_size: token-type vocabulary (2).
        layer_norm_eps: LayerNorm epsilon (1e-12).
        hidden_dropout_prob: dropout after embeddings and block outputs.
        attention_probs_dropout_prob: dropout on attention probabilities.
        initializer_range: std of the N(0, σ) weight init (0.02).
        use_attention_mask: mask padding in SA/DSC attention; False reproduces
            the paper's code, which ignored the mask.
        pad_token_id: id of [PAD]; its word-embedding row starts at 0.
    """

    model_type = "flexibert"

    def __init__(
        self,
        vocab_size: int = 30522,
        embedding_size: int = 128,
        hidden_size: int = 256,
        layers: Iterable[dict] | None = None,
        max_position_embeddings: int = 512,
        type_vocab_size: int = 2,
        layer_norm_eps: float = 1e-12,
        hidden_dropout_prob: float = 0.1,
        attention_probs_dropout_prob: float = 0.1,
        initializer_range: float = 0.02,
        use_attention_mask: bool = True,
        pad_token_id: int = 0,
        **kwargs: Any,
    ):
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.layers = [dict(lay) for lay in (layers or [])]
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.layer_norm_eps = layer_norm_eps
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.use_attention_mask = use_attention_mask

    @property
    def num_hidden_layers(self) -> int:
        """Number of encoder layers."""
        return len(self.layers)


def check_layer(layer: dict, hidden_size: int, where: str) -> None:
    """Validate one layer dict for a model of width ``hidden_size``.

    Raises:
        ValueError: naming ``where`` and the offending field.
    """
    missing = [k for k in _LAYER_KEYS if k not in layer]
    if missing:
        raise ValueError(f"{where}: missing fields {missing}")
    op, param = layer["operation_type"], layer["operation_parameter"]
    if op not in OPERATIONS:
        raise ValueError(f"{where}: operation_type={op!r}, expected one of {list(OPERATIONS)}")
    if op == "DSC":
        if isinstance(param, bool) or not isinstance(param, int) or param < 1 or param % 2 == 0:
            raise ValueError(f"{where}: DSC operation_parameter must be an odd kernel size, got {param!r}")
    elif param not in OPERATIONS[op]:
        raise ValueError(f"{where}: operation_parameter={param!r} is not valid for {op}; expected {OPERATIONS[op]}")
    h = layer["num_operation_heads"]
    if not isinstance(h, int) or h < 1 or hidden_size % h:
        raise ValueError(f"{where}: num_operation_heads={h!r} must be a positive divisor of hidden_size={hidden_size}")
    if op == "DSC" and h % 2:
        # DSC runs h/2 attention heads of size H/h beside h/2 convolution heads; an odd h cannot fill H.
        raise ValueError(f"{where}: DSC needs an even num_operation_heads, got {h} (nearest valid: {max(2, h - 1)})")
    for k in ("feed_forward_dimension", "num_feed_forward"):
        if not isinstance(layer[k], int) or layer[k] < 1:
            raise ValueError(f"{where}: {k}={layer[k]!r} must be a positive int")


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    # [B, S, heads*d] -> [B, heads, S, d]
    b, s, _ = x.shape
    return x.view(b, s, heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    # [B, heads, S, d] -> [B, S, heads*d]
    b, h, s, d = x.shape
    return x.transpose(1, 2).reshape(b, s, h * d)


def _scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention logits ``q kᵀ / √d (+ mask)``: [B, h, S, d] × 2 -> [B, h, S, S].

    The scale goes on q and the mask is added in place, so that no extra
    [B, h, S, S] temporaries exist (a 128 × 512 batch makes each 0.5 GB).
    """
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-1, -2)
    if mask is not None:
        scores.add_(mask)  # safe: matmul's backward does not need its output
    return scores


def dct_ii(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Unnormalised DCT-II along ``dim``, computed with one FFT (Makhoul 1980).

    ``y_k = 2 Σ_n x_n cos(π k (2n + 1) / (2N))``, i.e. ``scipy.fft.dct(x,
    type=2, norm=None)``.

    Args:
        x: real tensor of any shape.
        dim: the transformed axis (length N).

    Returns:
        Tensor of ``x``'s shape and dtype.
    """
    x = x.movedim(dim, -1)
    n = x.shape[-1]
    # Even samples in order, then odd samples reversed: the DCT-II becomes a
    # phase-shifted DFT of this reordering.
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    spec = torch.fft.fft(v, dim=-1)
    theta = torch.arange(n, dtype=x.dtype, device=x.device) * (math.pi / (2 * n))
    y = 2 * (spec.real * torch.cos(theta) + spec.imag * torch.sin(theta))
    return y.movedim(-1, dim)


class Fourier2d(nn.Module):
    """Real part of the 2-D DFT over the last two axes (sequence, head dim): [B, h, S, d] -> same shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft2(x, dim=(-2, -1)).real


class Cosine2d(nn.Module):
    """Unnormalised 2-D DCT-II over the last two axes (sequence, head dim): [B, h, S, d] -> same shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dct_ii(dct_ii(x, -1), -2)


class FlexiBertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout (ELECTRA): ids [B, S] -> [B, S, E]."""

    def __init__(self, config: FlexiBertConfig):
        super().__init__()
        e = config.embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, e, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, e)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, e)
        self.LayerNorm = nn.LayerNorm(e, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        seq = input_ids.shape[1]
        if seq > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"sequence length {seq} exceeds max_position_embeddings={self.position_embeddings.num_embeddings}"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(seq, device=input_ids.device)
        emb = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        emb = emb + self.position_embeddings(positions)[None]
        return self.dropout(self.LayerNorm(emb))


class FlexiBertSelfAttention(nn.Module):
    """SA block: multi-head self-attention (SDP or WMA), dense, dropout, LayerNorm(out + x).

    SDP: ``softmax(q kᵀ / √d + mask) v`` per head, q, k, v = linear H→H with
    bias, h heads of size d = H/h. WMA: the query projection's output is first
    multiplied by the bias-free H×H matrix ``wma`` (so the score is qᵀWk).

    Shapes: x [B, S, H], additive mask [B, 1, 1, S] or None -> [B, S, H].
    """

    operation_type = "SA"

    def __init__(self, config: FlexiBertConfig, layer: dict):
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = layer["num_operation_heads"]
        self.head_size = hidden // self.num_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.wma = nn.Linear(hidden, hidden, bias=False) if layer["operation_parameter"] == "WMA" else None
        self.softmax = nn.Softmax(dim=-1)
        self.attention_dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q = self.query(x)
        if self.wma is not None:
            q = self.wma(q)
        q, k, v = (_split_heads(t, self.num_heads) for t in (q, self.key(x), self.value(x)))
        probs = self.attention_dropout(self.softmax(_scores(q, k, mask)))
        context = _merge_heads(probs @ v)
        return self.LayerNorm(self.dropout(self.dense(context)) + x)


class FlexiBertLinearTransform(nn.Module):
    """LT block: linear H→H, split into h heads, 2-D DFT (real part) or DCT-II per head.

    No dense, no residual, no normalisation: the transform is the block's
    output. The transform mixes over the whole (padded) sequence axis.

    Shapes: x [B, S, H] -> [B, S, H]; ``transform`` maps [B, h, S, H/h] to the same shape.
    """

    operation_type = "LT"

    def __init__(self, config: FlexiBertConfig, layer: dict):
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = layer["num_operation_heads"]
        self.head_size = hidden // self.num_heads
        self.input_projection = nn.Linear(hidden, hidden)
        self.transform = Fourier2d() if layer["operation_parameter"] == "DFT" else Cosine2d()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        y = _split_heads(self.input_projection(x), self.num_heads)
        return _merge_heads(self.transform(y))


class SeparableConv1d(nn.Module):
    """ConvBERT's key convolution: depthwise Conv1d (kernel k, 'same' zero padding, no bias),
    pointwise Conv1d C_in→C_out (no bias), plus a bias vector of size C_out.

    Shapes: [B, C_in, S] -> [B, C_out, S].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.depthwise = nn.Conv1d(
            in_channels, in_channels, kernel_size, groups=in_channels, padding=kernel_size // 2, bias=False
        )
        self.pointwise = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x)) + self.bias[:, None]


class FlexiBertConvAttention(nn.Module):
    """DSC block: ConvBERT mixed attention (kernel k), dense, dropout, LayerNorm(out + x).

    With h' = h/2 heads of size d = H/h and A = h'·d = H/2:

    * attention branch: SDP over h' heads of ``query``, ``key``, ``value`` (H→A), masked;
    * ``key_conv`` (depthwise k, pointwise H→A, bias A) of x, times ``query(x)``,
      goes through ``kernel`` (A → h'·k) and a softmax over the k taps: one
      dynamic kernel per position and head;
    * convolution branch: ``conv_value(x)`` (H→A), windows of width k along
      the sequence (zero padding (k−1)/2), each head's d channels weighted by
      its position's kernel;
    * output = [attention branch ; convolution branch] (H), then dense etc.

    The convolutions read neighbouring positions including padding (not masked).

    Shapes: x [B, S, H], additive mask [B, 1, 1, S] or None -> [B, S, H].
    """

    operation_type = "DSC"

    def __init__(self, config: FlexiBertConfig, layer: dict):
        super().__init__()
        hidden = config.hidden_size
        self.kernel_size = layer["operation_parameter"]
        self.num_heads = layer["num_operation_heads"] // 2
        self.head_size = hidden // layer["num_operation_heads"]
        inner = self.num_heads * self.head_size
        self.query = nn.Linear(hidden, inner)
        self.key = nn.Linear(hidden, inner)
        self.value = nn.Linear(hidden, inner)
        self.key_conv = SeparableConv1d(hidden, inner, self.kernel_size)
        self.kernel = nn.Linear(inner, self.num_heads * self.kernel_size)
        self.conv_value = nn.Linear(hidden, inner)
        self.softmax = nn.Softmax(dim=-1)
        self.attention_dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, s, _ = x.shape
        hp, d, k = self.num_heads, self.head_size, self.kernel_size
        mixed_q = self.query(x)
        # Dynamic kernels: one softmax-normalised k-tap kernel per position and head.
        key_conv = self.key_conv(x.transpose(1, 2)).transpose(1, 2)
        kernels = torch.softmax(self.kernel(key_conv * mixed_q).view(b, s, hp, k), dim=-1)
        vals = F.pad(self.conv_value(x), (0, 0, (k - 1) // 2, (k - 1) // 2))
        windows = vals.unfold(1, k, 1).reshape(b, s, hp, d, k)  # [B, S, h', d, k]: taps at s-(k-1)/2 .. s+(k-1)/2
        conv_out = torch.einsum("bshdk,bshk->bshd", windows, kernels).reshape(b, s, hp * d)

        q, kk, v = (_split_heads(t, hp) for t in (mixed_q, self.key(x), self.value(x)))
        probs = self.attention_dropout(self.softmax(_scores(q, kk, mask)))
        context = torch.cat([_merge_heads(probs @ v), conv_out], dim=-1)
        return self.LayerNorm(self.dropout(self.dense(context)) + x)


class FlexiBertFeedForward(nn.Module):
    """Feed-forward block: GELU(ffn[0] x), then n−1 × GELU(ffn[i] ·), then ffn[n], dropout, LayerNorm(out + x).

    ``ffn`` holds the n + 1 linears H→I, (I→I)×(n−1), I→H; ``act`` is the one
    (exact, erf) GELU module, called n times per forward.

    Shapes: [B, S, H] -> [B, S, H].
    """

    def __init__(self, config: FlexiBertConfig, layer: dict):
        super().__init__()
        hidden, inner, n = config.hidden_size, layer["feed_forward_dimension"], layer["num_feed_forward"]
        self.ffn = nn.ModuleList(
            [nn.Linear(hidden, inner)] + [nn.Linear(inner, inner) for _ in range(n - 1)] + [nn.Linear(inner, hidden)]
        )
        self.act = nn.GELU()
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for lin in self.ffn[:-1]:
            y = self.act(lin(y))
        return self.LayerNorm(self.dropout(self.ffn[-1](y)) + x)


_BLOCKS = {"SA": FlexiBertSelfAttention, "LT": FlexiBertLinearTransform, "DSC": FlexiBertConvAttention}


class FlexiBertLayer(nn.Module):
    """One encoder layer: token-mixing ``operation`` then ``feed_forward``: [B, S, H] -> [B, S, H]."""

    def __init__(self, config: FlexiBertConfig, layer: dict):
        super().__init__()
        self.operation = _BLOCKS[layer["operation_type"]](config, layer)
        self.feed_forward = FlexiBertFeedForward(config, layer)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.feed_forward(self.operation(x, mask))


class FlexiBertEncoder(nn.Module):
    """The stack of :class:`FlexiBertLayer` (``layer`` ModuleList)."""

    def __init__(self, config: FlexiBertConfig):
        super().__init__()
        self.layer = nn.ModuleList(FlexiBertLayer(config, lay) for lay in config.layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, output_hidden_states: bool = False):
        states = [x] if output_hidden_states else None
        for layer in self.layer:
            x = layer(x, mask)
            if states is not None:
                states.append(x)
        return x, (tuple(states) if states is not None else None)


class FlexiBertPreTrainedModel(PreTrainedModel):
    """Weight init (ELECTRA/BERT) and save/load plumbing for FlexiBERT models.

    Init: Linear, Conv1d and Embedding weights N(0, ``initializer_range``),
    biases 0 (also the key convolution's bias vector), the padding row of the
    word embedding 0, LayerNorm weight 1 and bias 0.
    """

    config_class = FlexiBertConfig
    base_model_prefix = "flexibert"
    supports_gradient_checkpointing = False
    _no_split_modules = ["FlexiBertLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        if any(p.is_meta for p in module.parameters(recurse=False)):
            return  # meta tensors (parameter counting) hold no values to initialise
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()
        elif isinstance(module, SeparableConv1d):
            module.bias.data.zero_()


class FlexiBertModel(FlexiBertPreTrainedModel):
    """The FlexiBERT encoder (ELECTRA discriminator body, no head).

    Args:
        config: a :class:`FlexiBertConfig` with at least one layer.

    Raises:
        ValueError: no layers, or an invalid layer (the message names it).
    """

    def __init__(self, config: FlexiBertConfig):
        super().__init__(config)
        if not config.layers:
            raise ValueError("FlexiBertConfig.layers is empty: the encoder needs at least one layer")
        for i, lay in enumerate(config.layers):
            check_layer(lay, config.hidden_size, f"layer {i}")
        self.embeddings = FlexiBertEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        else:
            self.embeddings_project = None
        self.encoder = FlexiBertEncoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Embedding output fed to the first layer: ids [B, S] -> [B, S, H] (after the E→H projection)."""
        x = self.embeddings(input_ids, token_type_ids)
        return self.embeddings_project(x) if self.embeddings_project is not None else x

    def extended_mask(self, attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """Additive attention mask [B, 1, 1, S] (0 keep, ``finfo.min`` drop), or None when masks are off or absent."""
        if attention_mask is None or not self.config.use_attention_mask:
            return None
        if attention_mask.dim() != 2:
            raise ValueError(f"attention_mask must be [batch, seq], got shape {tuple(attention_mask.shape)}")
        keep = attention_mask[:, None, None, :].to(dtype)
        return (1.0 - keep) * torch.finfo(dtype).min

    def encode(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None, output_hidden_states: bool = False
    ) -> BaseModelOutput:
        """Run the encoder layers on an embedding output ``hidden`` [B, S, H] (e.g. for embedding-level proxies)."""
        x, states = self.encoder(hidden, self.extended_mask(attention_mask, hidden.dtype), output_hidden_states)
        return BaseModelOutput(last_hidden_state=x, hidden_states=states)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool | None = None,
    ) -> BaseModelOutput:
        """Encode token ids.

        Args:
            input_ids: [B, S] word-piece ids, S ≤ ``max_position_embeddings``.
            attention_mask: [B, S], 1 for real tokens and 0 for padding;
                ignored when ``config.use_attention_mask`` is False.
            token_type_ids: [B, S] segment ids (default all 0).
            output_hidden_states: also return the embedding output and every layer's output.
            return_dict: accepted for transformers compatibility; the output is always a ``BaseModelOutput``.

        Returns:
            ``BaseModelOutput`` with ``last_hidden_state`` [B, S, H] (and
            ``hidden_states``, L + 1 tensors [B, S, H], when asked).

        Raises:
            ValueError: a sequence longer than the position table, or a mask of the wrong rank.
        """
        return self.encode(self.embed(input_ids, token_type_ids), attention_mask, output_hidden_states)


AutoConfig.register(FlexiBertConfig.model_type, FlexiBertConfig, exist_ok=True)
AutoModel.register(FlexiBertConfig, FlexiBertModel, exist_ok=True)
