"""The AWD-LSTM-style language model that NAS-Bench-NLP wraps around each cell.

docs/SPACES.md §1 "Language model around the cell" (Merity et al. 2018, AWD-LSTM;
Klyuchnikov et al. 2020): embedding → 3 recurrent layers (400→600, 600→600,
600→400) → decoder tied to the embedding. Dropouts: embedding dropout
(whole word vectors), locked (variational) dropout on the embedding output,
between layers and on the final output, and DropConnect on hidden-to-hidden
weights; all inactive in eval mode.

Construction reproduces the benchmark's exact order of random draws
(docs/METRICS.md "Reproduction facts"), so a model built after
``torch.manual_seed(s)`` equals the benchmark's model for seed ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tfnas.models.rnn_cell import CellCapture, RecurrentLayer
from tfnas.spaces.nasbench_nlp.recipe import Recipe


@dataclass
class LMOutput:
    """What :meth:`AWDLanguageModel.forward` returns.

    Attributes:
        logits: [seq, batch, ntoken] next-token logits (None with ``decode=False``).
        output: [seq, batch, emsize] the last layer's output after the final
            locked dropout (what the decoder reads; AR regularisation uses it).
        raw_output: [seq, batch, emsize] the last layer's output before
            dropout (TAR regularisation uses it).
        hidden: the final hidden tuple of each layer (detach it for truncated BPTT).
    """

    logits: Tensor | None
    output: Tensor
    raw_output: Tensor
    hidden: list[tuple[Tensor, ...]]


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Variational dropout: one mask per sequence, shared over time.

    Args:
        x: [seq, batch, features].
        p: drop probability.
    Returns:
        x with the same features of each sequence zeroed at every step, scaled by 1/(1-p).
    """
    if not training or p <= 0:
        return x
    mask = x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p) / (1 - p)
    return x * mask


def embedding_dropout(embed: nn.Embedding, tokens: Tensor, p: float, training: bool) -> Tensor:
    """Embedding lookup with whole word vectors dropped (AWD-LSTM ``embedded_dropout``).

    Args:
        embed: the embedding module, weight [ntoken, emsize].
        tokens: [seq, batch] token ids.
        p: probability of dropping a word type (its whole row).
    Returns:
        [seq, batch, emsize].
    """
    weight = embed.weight
    if training and p > 0:
        keep = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p) / (1 - p)
        weight = weight * keep
    return F.embedding(tokens, weight)


class AWDLanguageModel(nn.Module):
    """NAS-Bench-NLP language model around a recipe cell.

    Args:
        recipe: the cell.
        ntoken: vocabulary size (PTB 10,000; WikiText-2 33,278).
        emsize: embedding size (benchmark 400).
        nhid: hidden size of the inner layers (benchmark 600).
        nlayers: number of recurrent layers (benchmark 3).
        dropout, dropouth, dropouti, dropoute: the AWD dropouts (final output,
            between layers, embedding output, embedding rows).
        wdrop: DropConnect on hidden-to-hidden weights.
        benchmark_init: reproduce the benchmark's draws (needs the torch CPU
            generator seeded by the caller); False skips all random draws
            (e.g. on the meta device, to count parameters).

    Raises:
        ValueError: nlayers < 1 or non-positive sizes.
    """

    def __init__(
        self,
        recipe: Recipe,
        ntoken: int,
        emsize: int = 400,
        nhid: int = 600,
        nlayers: int = 3,
        dropout: float = 0.4,
        dropouth: float = 0.25,
        dropouti: float = 0.4,
        dropoute: float = 0.1,
        wdrop: float = 0.5,
        benchmark_init: bool = True,
    ):
        super().__init__()
        if nlayers < 1 or min(ntoken, emsize, nhid) < 1:
            raise ValueError(f"invalid sizes: ntoken={ntoken}, emsize={emsize}, nhid={nhid}, nlayers={nlayers}")
        self.recipe = recipe
        self.ntoken, self.emsize, self.nhid, self.nlayers = ntoken, emsize, nhid, nlayers
        self.dropout, self.dropouth, self.dropouti, self.dropoute = dropout, dropouth, dropouti, dropoute
        # Construction order = the benchmark's order of random draws (steps 1-6).
        self.encoder = nn.Embedding(ntoken, emsize)  # 1. normal init
        sizes = [(emsize if i == 0 else nhid, emsize if i == nlayers - 1 else nhid) for i in range(nlayers)]
        self.layers = nn.ModuleList()
        for inp, hid in sizes:
            layer = RecurrentLayer(recipe, inp, hid, wdrop)
            if benchmark_init:
                layer.benchmark_init()  # 2.
            self.layers.append(layer)
        self.decoder = nn.Linear(nhid, ntoken)  # 3. default init, drawn although tied below
        self.decoder.weight = self.encoder.weight
        if benchmark_init:
            with torch.no_grad():
                self.encoder.weight.uniform_(-0.1, 0.1)  # 4.
                self.decoder.bias.zero_()  # 5.
                self.encoder.weight.uniform_(-0.1, 0.1)  # 6. (the tied tensor)

    def init_hidden(self, batch_size: int) -> list[tuple[Tensor, ...]]:
        """Zero hidden tuples for every layer: each T tensors [batch, hidden_l]."""
        w = self.encoder.weight
        return [layer.init_hidden(batch_size, w.device, w.dtype) for layer in self.layers]

    def run_layers(
        self,
        emb: Tensor,
        hidden: list[tuple[Tensor, ...]] | None = None,
        capture: CellCapture | None = None,
    ) -> tuple[Tensor, Tensor, list[tuple[Tensor, ...]]]:
        """The recurrent stack on embedding outputs (no embedding, no decoder).

        Args:
            emb: [seq, batch, emsize] embedding output.
            hidden: initial hidden tuples per layer; zeros when None.
            capture: optional recorder for the training-free metrics.

        Returns:
            (output after the final locked dropout, raw last-layer output,
            final hidden tuples), outputs [seq, batch, emsize].
        """
        x = locked_dropout(emb, self.dropouti, self.training)
        new_hidden = []
        for i, layer in enumerate(self.layers):
            x, h = layer(x, None if hidden is None else hidden[i], capture)
            new_hidden.append(h)
            if i < self.nlayers - 1:
                x = locked_dropout(x, self.dropouth, self.training)
        raw = x
        return locked_dropout(raw, self.dropout, self.training), raw, new_hidden

    def forward(
        self,
        tokens: Tensor,
        hidden: list[tuple[Tensor, ...]] | None = None,
        decode: bool = True,
    ) -> LMOutput:
        """Language-model forward.

        Args:
            tokens: [seq, batch] token ids.
            hidden: initial hidden tuples per layer (zeros when None).
            decode: apply the tied decoder and return logits.

        Returns:
            :class:`LMOutput`.
        """
        emb = embedding_dropout(self.encoder, tokens, self.dropoute, self.training)
        out, raw, new_hidden = self.run_layers(emb, hidden)
        logits = self.decoder(out) if decode else None
        return LMOutput(logits, out, raw, new_hidden)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, each tensor once (the tied weight counts once).

    This is the benchmark logs' ``num_params``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
