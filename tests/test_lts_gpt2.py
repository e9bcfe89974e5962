"""LTS GPT-2 decoder: adaptive embedding and softmax against direct formulas, causality, blocks, save/load."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from tfnas.models.adaptive import AdaptiveEmbedding
from tfnas.models.lts_gpt2 import LtsGpt2Config, LtsGpt2LMHeadModel, clean_cutoffs, parameter_counts


def tiny(**kw):
    """V = 40 in clusters [0, 10), [10, 25), [25, 40); D = 8, E = 16, two blocks."""
    args = dict(
        n_token=40, tgt_len=12, d_model=8, d_embed=16, n_layer=2, n_head=[2, 4], d_inner=[12, 20],
        div_val=2, cutoffs=[10, 25], tie_projs=[False, True, True], dropout=0.0,
    )  # fmt: skip
    args.update(kw)
    torch.manual_seed(0)
    return LtsGpt2LMHeadModel(LtsGpt2Config(**args)).eval().double()


def jitter(model, std=0.3):
    """Random values for every parameter, so that zero-initialised biases are exercised too."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return model


def test_clean_cutoffs_follows_lts():
    assert clean_cutoffs([19997, 39997, 199997, 50264], 50264) == [19997, 39997, 50264]
    assert clean_cutoffs([59997, 99997, 639997, 50264], 50264) == [50264]
    assert clean_cutoffs([10, 40, 60], 40) == [10, 40]
    assert clean_cutoffs([], 40) == [40] and clean_cutoffs(None, 40) == [40]
    with pytest.raises(ValueError, match="increasing"):
        clean_cutoffs([20, 10], 40)


def test_adaptive_embedding_equals_the_direct_formula():
    for kw in ({}, {"div_val": 1}, {"div_val": 1, "d_embed": 8}):
        model = jitter(tiny(**kw))
        emb = model.transformer.wte
        ids = torch.arange(40).view(4, 10)
        got = emb(ids)
        for t in range(40):
            if emb.div_val == 1:
                vec = emb.emb_layers[0].weight[t]
                vec = emb.emb_projs[0] @ vec if len(emb.emb_projs) else vec
            else:
                k = 0 if t < 10 else (1 if t < 25 else 2)
                lo = (0, 10, 25)[k]
                assert emb.emb_layers[k].weight.shape[1] == 16 // 2**k
                vec = emb.emb_projs[k] @ emb.emb_layers[k].weight[t - lo]
            torch.testing.assert_close(got.view(-1, 8)[t], math.sqrt(8) * vec)


def direct_log_probs(model, hidden):
    """log p(t | h) for every token, written out: head softmax over cluster 0 and the cluster logits, tails within."""
    emb, crit = model.transformer.wte, model.crit
    proj = [crit.out_projs["0"], emb.emb_projs[1], emb.emb_projs[2]]  # tie_projs = [False, True, True]
    tables = [layer.weight for layer in emb.emb_layers]  # tie_weight
    head_logits = torch.cat(
        [(hidden @ proj[0]) @ tables[0].T + crit.out_biases[0], (hidden @ proj[0]) @ crit.cluster_weight.T + crit.cluster_bias],
        dim=-1,
    )
    head = head_logits.log_softmax(-1)
    out = [head[:, :10]]
    for k in (1, 2):
        tail = ((hidden @ proj[k]) @ tables[k].T + crit.out_biases[k]).log_softmax(-1)
        out.append(head[:, 10 + k - 1 : 10 + k] + tail)
    return torch.cat(out, -1)


def test_adaptive_softmax_equals_the_direct_formula():
    model = jitter(tiny())
    hidden = torch.randn(7, 8, dtype=torch.float64)
    want = direct_log_probs(model, hidden)
    got = model.log_prob(hidden)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got.exp().sum(-1), torch.ones(7, dtype=torch.float64))
    target = torch.tensor([0, 9, 10, 24, 25, 39, 17])
    torch.testing.assert_close(model.nll(hidden, target), -want[torch.arange(7), target])


def test_untied_and_single_cluster_softmax_are_normalised_and_match_nll():
    for kw in ({"tie_weight": False}, {"cutoffs": [], "div_val": 1, "tie_projs": [False]}, {"div_val": 1}):
        model = jitter(tiny(**kw))
        hidden = torch.randn(5, 8, dtype=torch.float64)
        lp = model.log_prob(hidden)
        torch.testing.assert_close(lp.exp().sum(-1), torch.ones(5, dtype=torch.float64))
        target = torch.tensor([1, 12, 30, 39, 0])
        torch.testing.assert_close(model.nll(hidden, target), -lp[torch.arange(5), target])
    # tie_weight=False: the softmax owns tables of the cluster sizes
    untied = tiny(tie_weight=False)
    assert [tuple(w.shape) for w in untied.crit.out_weights] == [(10, 16), (15, 8), (15, 4)]


def reference_block(block, x, post_ln=False):
    """One block by hand, with torch's causal scaled dot-product attention."""
    attn = block.attn
    b, s, _ = x.shape

    def attend(y):
        q, k, v = attn.qkv(y).view(b, s, 3, attn.n_head, attn.d_head).permute(2, 0, 3, 1, 4)
        ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return attn.proj(ctx.transpose(1, 2).reshape(b, s, -1))

    def mlp(y):
        return block.mlp.proj(F.gelu(block.mlp.fc(y), approximate="tanh"))

    if post_ln:
        x = block.ln_1(x + attend(x))
        return block.ln_2(x + mlp(x))
    x = x + attend(block.ln_1(x))
    return x + mlp(block.ln_2(x))


def test_blocks_and_loss_equal_a_hand_computation():
    for layout, post in (("gpt2", False), ("pre_lnorm", True)):
        model = jitter(tiny(block_layout=layout))
        ids = torch.randint(0, 40, (3, 11), generator=torch.Generator().manual_seed(1))
        x = model.transformer.embed(ids)
        torch.testing.assert_close(x, model.transformer.wte(ids) + model.transformer.wpe.weight[:11])
        for block in model.transformer.h:
            x = reference_block(block, x, post_ln=post)
        x = model.transformer.ln_f(x)
        out = model(ids, labels=ids, output_hidden_states=True)
        torch.testing.assert_close(model.transformer(ids)["last_hidden_state"], x)
        want = -direct_log_probs(model, x[:, :-1].reshape(-1, 8)).gather(1, ids[:, 1:].reshape(-1, 1)).mean()
        torch.testing.assert_close(out.loss, want)
        assert len(out.hidden_states) == 3


def test_pre_lnorm_true_is_the_gpt2_layout():
    a = jitter(tiny(block_layout="pre_lnorm", pre_lnorm=True))
    b = jitter(tiny())
    ids = torch.randint(0, 40, (2, 9))
    torch.testing.assert_close(a.transformer(ids)["last_hidden_state"], b.transformer(ids)["last_hidden_state"])


def test_causal_masking_later_tokens_do_not_change_earlier_outputs():
    for layout in ("gpt2", "pre_lnorm"):
        model = jitter(tiny(block_layout=layout))
        ids = torch.randint(0, 40, (2, 12), generator=torch.Generator().manual_seed(2))
        changed = ids.clone()
        changed[:, 7:] = (changed[:, 7:] + 13) % 40
        a = model.transformer(ids, output_hidden_states=True, output_attentions=True)
        b = model.transformer(changed, output_hidden_states=True, output_attentions=True)
        for ha, hb in zip(a["hidden_states"], b["hidden_states"]):
            torch.testing.assert_close(ha[:, :7], hb[:, :7])
            assert not torch.allclose(ha[:, 7:], hb[:, 7:])
        for pa in a["attentions"]:
            assert torch.all(pa.triu(1) == 0)  # no weight on later positions
        # the next-token NLL of positions 0..5 (targets 1..6) is unchanged
        na = model.nll(a["last_hidden_state"][:, :6], ids[:, 1:7])
        nb = model.nll(b["last_hidden_state"][:, :6], changed[:, 1:7])
        torch.testing.assert_close(na, nb)


def test_head_mask_zeroes_one_heads_contribution():
    model = jitter(tiny())
    ids = torch.randint(0, 40, (2, 6))
    x = model.transformer.embed(ids)
    block = model.transformer.h[1]
    y = block.ln_1(x)
    mask = torch.ones(4, dtype=torch.float64)
    mask[2] = 0
    out, _, ctx = block.attn(y, mask)
    full, _, ctx_full = block.attn(y)
    keep = ctx_full.clone()
    keep[:, 2] = 0
    torch.testing.assert_close(out, block.attn.proj(keep.transpose(1, 2).reshape(2, 6, 8)))
    torch.testing.assert_close(ctx, keep)


def test_parameter_counts_of_a_tiny_config_by_hand():
    model = tiny()
    counts = parameter_counts(model)
    d, blocks = 8, [(2, 12), (4, 20)]
    attn = sum(d * 3 * d + 3 * d + d * d + d for _ in blocks)
    ffn = sum(2 * d * f + f + d for _, f in blocks)
    assert counts["Attn"] == attn and counts["FFN"] == ffn
    assert counts["nonembedding"] == attn + ffn + (2 * len(blocks) + 1) * 2 * d
    ada = 10 * 16 + 15 * 8 + 15 * 4 + d * (16 + 8 + 4) + 12 * d
    assert counts["AdaEmb"] == ada
    softmax = 40 + 2 * 16 + 2 + d * 16  # biases, cluster head, untied first projection
    assert counts["total"] == ada + counts["nonembedding"] + softmax


def test_init_follows_lts():
    torch.manual_seed(0)
    cfg = LtsGpt2Config(n_token=5000, d_model=64, d_embed=128, n_layer=8, n_head=4, d_inner=512, div_val=2,
                        cutoffs=[2000, 4000], tgt_len=64)  # fmt: skip
    m = LtsGpt2LMHeadModel(cfg)
    assert abs(m.transformer.wte.emb_layers[0].weight.std().item() - 0.02) < 1e-3
    assert abs(m.transformer.wte.emb_projs[0].std().item() - 0.01) < 5e-4
    assert abs(m.transformer.h[0].attn.qkv.weight.std().item() - 0.02) < 1e-3
    assert abs(m.transformer.h[0].mlp.proj.weight.std().item() - 0.02 / 4) < 3e-4  # 0.02 / √(2·8)
    assert abs(m.transformer.h[3].attn.proj.weight.std().item() - 0.02 / 4) < 5e-4
    assert torch.all(m.transformer.h[0].attn.qkv.bias == 0) and torch.all(m.crit.out_biases[0] == 0)
    assert torch.all(m.transformer.ln_f.weight == 1)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="n_head has 1 entries"):
        LtsGpt2Config(n_layer=2, n_head=[2])
    with pytest.raises(ValueError, match="not divisible"):
        LtsGpt2Config(d_model=10, n_head=4, n_layer=1)
    with pytest.raises(ValueError, match="block_layout"):
        LtsGpt2Config(block_layout="post")
    with pytest.raises(ValueError, match="Transformer-XL"):
        LtsGpt2Config.from_lts({"n_layer": 2, "attn_type": 1})
    with pytest.raises(ValueError, match="unknown LTS model_config field"):
        LtsGpt2Config.from_lts({"n_layer": 2, "n_hed": 4})
    model = tiny()
    with pytest.raises(ValueError, match="exceeds tgt_len"):
        model(torch.zeros(1, 13, dtype=torch.long))


def test_explicit_d_head_sizes_the_attention():
    cfg = LtsGpt2Config(n_token=40, d_model=8, n_layer=1, n_head=2, d_head=6, d_inner=10, cutoffs=[], tgt_len=8)
    m = LtsGpt2LMHeadModel(cfg)
    assert m.transformer.h[0].attn.qkv.weight.shape == (36, 8) and m.transformer.h[0].attn.proj.weight.shape == (8, 12)
    m(torch.zeros(1, 5, dtype=torch.long))


def test_save_and_load_round_trip(tmp_path):
    model = jitter(tiny())
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).double().eval()
    assert isinstance(loaded, LtsGpt2LMHeadModel)
    ids = torch.randint(0, 40, (2, 8))
    torch.testing.assert_close(loaded(ids, labels=ids).loss, model(ids, labels=ids).loss)
    assert loaded.config.cutoffs == [10, 25, 40] and loaded.config.n_head == [2, 4]


def test_embedding_rejects_out_of_range_ids():
    emb = AdaptiveEmbedding(LtsGpt2Config(n_token=40, d_model=8, d_embed=16, n_layer=1, n_head=2, div_val=2, cutoffs=[10]))
    with pytest.raises(IndexError, match=r"\[0, 40\)"):
        emb(torch.tensor([[3, 40]]))
