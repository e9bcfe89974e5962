"""FlexiBERT encoder: each layer type against an independent reference, masks, init, save/load."""

import math

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F
from transformers import AutoModel

from tfnas.models.flexibert import (
    Cosine2d,
    FlexiBertConfig,
    FlexiBertModel,
    Fourier2d,
    dct_ii,
)


def layer(op, param, heads=2, ffn=24, n=1):
    return {
        "operation_type": op,
        "operation_parameter": param,
        "num_operation_heads": heads,
        "feed_forward_dimension": ffn,
        "num_feed_forward": n,
    }


def tiny(layers, hidden=16, **kw):
    cfg = FlexiBertConfig(
        vocab_size=50, embedding_size=8, hidden_size=hidden, max_position_embeddings=32, layers=layers, **kw
    )
    torch.manual_seed(0)
    return FlexiBertModel(cfg).eval()


def test_dct_and_dft_match_numpy_scipy():
    x = torch.randn(2, 3, 11, 6, dtype=torch.float64)
    for dim in (-1, -2, 1):
        ref = scipy.fft.dct(x.numpy(), type=2, axis=dim)
        np.testing.assert_allclose(dct_ii(x, dim).numpy(), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        Cosine2d()(x).numpy(), scipy.fft.dctn(x.numpy(), type=2, axes=(-2, -1)), rtol=1e-10, atol=1e-10
    )
    np.testing.assert_allclose(Fourier2d()(x).numpy(), np.fft.fft2(x.numpy()).real, rtol=1e-10, atol=1e-10)
    # Even length too (the reordering differs for odd and even N).
    y = torch.randn(4, 8, dtype=torch.float64)
    np.testing.assert_allclose(Cosine2d()(y).numpy(), scipy.fft.dctn(y.numpy(), type=2), rtol=1e-10, atol=1e-10)


def jitter(module, std=0.3):
    """Random values for every parameter (biases and LayerNorm too), so references see all of them."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            offset = 1.0 if name == "LayerNorm.weight" else 0.0
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std + offset)
    return module


@pytest.mark.parametrize(
    "param, transform",
    [("DFT", lambda a: np.fft.fft2(a).real), ("DCT", lambda a: scipy.fft.dctn(a, type=2, axes=(-2, -1)))],
)
def test_lt_block_against_numpy(param, transform):
    m = tiny([layer("LT", param, heads=4)])
    block = jitter(m.encoder.layer[0].operation)
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        out = block(x).numpy()
    w, b = block.input_projection.weight.detach().numpy(), block.input_projection.bias.detach().numpy()
    p = (x.numpy() @ w.T + b).reshape(2, 7, 4, 4).transpose(0, 2, 1, 3)  # [B, h, S, d]
    ref = transform(p).transpose(0, 2, 1, 3).reshape(2, 7, 16)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def _sa_reference(block, x, key_mask=None, wma=False):
    """Attention block output from torch's scaled_dot_product_attention."""
    b, s, h = x.shape
    q = block.query(x)
    if wma:
        q = block.wma(q)
    split = lambda t: t.view(b, s, block.num_heads, -1).transpose(1, 2)
    mask = None if key_mask is None else key_mask[:, None, None, :].bool()
    ctx = F.scaled_dot_product_attention(split(q), split(block.key(x)), split(block.value(x)), attn_mask=mask)
    ctx = ctx.transpose(1, 2).reshape(b, s, h)
    return block.LayerNorm(block.dense(ctx) + x)


def test_sdp_block_matches_torch_sdpa():
    m = tiny([layer("SA", "SDP", heads=4)])
    block = jitter(m.encoder.layer[0].operation)
    x = torch.randn(3, 9, 16)
    key_mask = torch.ones(3, 9)
    key_mask[1, 6:] = 0
    with torch.no_grad():
        torch.testing.assert_close(block(x), _sa_reference(block, x), rtol=1e-5, atol=1e-5)
    add = m.extended_mask(key_mask, x.dtype)
    # Same values and same gradients (the mask is added in place inside the block).
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = block(x1, add), _sa_reference(block, x2, key_mask)
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    w = torch.randn_like(y1)
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)


def test_wma_scores_are_q_w_k():
    m = tiny([layer("SA", "WMA", heads=2)])
    block = jitter(m.encoder.layer[0].operation.double())
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block(x), _sa_reference(block, x, wma=True))
        # Explicit score of head hd between positions i, j: (W q_i)[head] · k_j[head] / sqrt(d).
        wq, bq = block.query.weight, block.query.bias
        wk, bk = block.key.weight, block.key.bias
        W = block.wma.weight
        probs = []
        block.softmax.register_forward_hook(lambda mod, inp, out: probs.append(out))
        block(x)
        d = 8
        for bi in range(2):
            for hd in range(2):
                sl = slice(hd * d, (hd + 1) * d)
                for i in range(5):
                    qi = W @ (wq @ x[bi, i] + bq)
                    scores = torch.stack([qi[sl] @ (wk @ x[bi, j] + bk)[sl] for j in range(5)]) / math.sqrt(d)
                    torch.testing.assert_close(probs[0][bi, hd, i], torch.softmax(scores, 0))
    assert block.wma.bias is None and block.wma.weight.shape == (16, 16)


def _dsc_reference(block, x, key_mask=None):
    """ConvBERT mixed attention written with explicit loops (docs/SPACES.md §2, DSC)."""
    b, s, h = x.shape
    hp, d, k = block.num_heads, block.head_size, block.kernel_size
    pad = (k - 1) // 2
    q, key, v = block.query(x), block.key(x), block.value(x)
    # Key convolution: depthwise over the sequence with zero padding, then pointwise, then bias.
    dw = block.key_conv.depthwise.weight[:, 0, :]  # [H, k]
    xp = torch.cat([torch.zeros(b, pad, h, dtype=x.dtype), x, torch.zeros(b, pad, h, dtype=x.dtype)], 1)
    depth = torch.stack([(xp[:, t : t + k, :] * dw.T[None]).sum(1) for t in range(s)], 1)  # [B, S, H]
    kc = depth @ block.key_conv.pointwise.weight[:, :, 0].T + block.key_conv.bias
    kern = torch.softmax((block.kernel(kc * q)).view(b, s, hp, k), -1)
    cv = block.conv_value(x)
    cvp = torch.cat([torch.zeros(b, pad, hp * d, dtype=x.dtype), cv, torch.zeros(b, pad, hp * d, dtype=x.dtype)], 1)
    conv = torch.zeros(b, s, hp, d, dtype=x.dtype)
    for t in range(s):
        for j in range(k):
            conv[:, t] += cvp[:, t + j].view(b, hp, d) * kern[:, t, :, j, None]
    att = torch.zeros(b, s, hp, d, dtype=x.dtype)
    for hd in range(hp):
        sl = slice(hd * d, (hd + 1) * d)
        sc = q[..., sl] @ key[..., sl].transpose(1, 2) / math.sqrt(d)
        if key_mask is not None:
            sc = sc.masked_fill(key_mask[:, None, :] == 0, float("-inf"))
        att[:, :, hd] = torch.softmax(sc, -1) @ v[..., sl]
    ctx = torch.cat([att.reshape(b, s, -1), conv.reshape(b, s, -1)], -1)
    return block.LayerNorm(block.dense(ctx) + x)


@pytest.mark.parametrize("kernel, heads", [(5, 2), (9, 4)])
def test_dsc_block_against_loop_reference(kernel, heads):
    m = tiny([layer("DSC", kernel, heads=heads)])
    block = jitter(m.encoder.layer[0].operation.double())
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    key_mask = torch.ones(2, 11)
    key_mask[0, 8:] = 0
    probs = []
    block.softmax.register_forward_hook(lambda mod, inp, out: probs.append(out))
    with torch.no_grad():
        # "Same" padding: the key convolution keeps the sequence length.
        assert block.key_conv(x.transpose(1, 2)).shape == (2, heads // 2 * (16 // heads), 11)
        out = block(x)
        assert out.shape == x.shape
        torch.testing.assert_close(out, _dsc_reference(block, x))
        masked = block(x, m.extended_mask(key_mask, x.dtype))
        torch.testing.assert_close(masked, _dsc_reference(block, x, key_mask))
    assert probs[-1].shape == (2, heads // 2, 11, 11)
    assert float(probs[-1][0, :, :, 8:].abs().max()) == 0.0  # padded keys get no attention
    assert not torch.allclose(masked, out)


def test_sa_only_model_ignores_padding_in_faithful_mode():
    layers = [layer("SA", "SDP", heads=4, n=3), layer("SA", "WMA", heads=2)]
    m = tiny(layers)
    ids = torch.tensor([[2, 17, 5, 33, 9, 3]])
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], 1).long()
    with torch.no_grad():
        ref = m(ids).last_hidden_state
        out = m(padded, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(out[:, :6], ref, rtol=1e-5, atol=1e-5)
        # The paper's switch ignores the mask: padding then changes the real tokens' outputs.
        compat = tiny(layers, use_attention_mask=False)
        c_out = compat(padded, attention_mask=mask).last_hidden_state
        assert not torch.allclose(c_out[:, :6], compat(ids).last_hidden_state, atol=1e-4)
        torch.testing.assert_close(c_out, compat(padded).last_hidden_state)


def test_feed_forward_structure_and_gelu_calls():
    m = tiny([layer("LT", "DFT", ffn=24, n=3)])
    ff = m.encoder.layer[0].feed_forward
    assert [tuple(l.weight.shape) for l in ff.ffn] == [(24, 16), (24, 24), (24, 24), (16, 24)]
    calls = []
    ff.act.register_forward_hook(lambda mod, inp, out: calls.append(out.shape))
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        y = ff(x)
        ref = x
        for lin in ff.ffn[:-1]:
            ref = F.gelu(lin(ref))
        ref = ff.LayerNorm(ff.ffn[-1](ref) + x)
    assert len(calls) == 3  # one GELU module, called n times
    torch.testing.assert_close(y, ref)


def test_init_follows_electra():
    layers = [layer("DSC", 9, heads=4, ffn=256), layer("SA", "WMA", heads=4, ffn=256)]
    cfg = FlexiBertConfig(hidden_size=64, layers=layers)
    torch.manual_seed(0)
    m = FlexiBertModel(cfg)
    for name, p in m.named_parameters():
        if name.endswith("LayerNorm.weight"):
            assert torch.all(p == 1), name
        elif name.endswith("bias"):
            assert torch.all(p == 0), name
        elif p.numel() >= 1000:
            assert abs(p.std().item() - 0.02) < 0.003, (name, p.std().item())
    assert torch.all(m.embeddings.word_embeddings.weight[0] == 0)  # [PAD] row
    dw = m.encoder.layer[0].operation.key_conv.depthwise.weight
    assert abs(dw.std().item() - 0.02) < 0.005


def test_save_and_load_round_trip(tmp_path):
    layers = [layer("SA", "WMA"), layer("LT", "DCT", n=3), layer("DSC", 5, heads=2)]
    m = tiny(layers, use_attention_mask=False)
    m.save_pretrained(tmp_path)
    for loaded in (FlexiBertModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert isinstance(loaded, FlexiBertModel)
        assert loaded.config.layers == layers and loaded.config.hidden_size == 16
        assert loaded.config.use_attention_mask is False
        ids = torch.tensor([[1, 4, 9, 16, 25, 36, 2]])
        loaded.eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(ids).last_hidden_state, m(ids).last_hidden_state, rtol=0, atol=0)


def test_generator_sized_config_builds():
    # ELECTRA generator: H/4, heads max(1, h/4), I/4; DSC needs an even head count (2 is the nearest valid).
    layers = [
        layer("SA", "SDP", heads=1, ffn=32),
        layer("LT", "DCT", heads=1, ffn=32),
        layer("DSC", 9, heads=2, ffn=32),
    ]
    m = tiny(layers, hidden=8)
    assert m.embeddings_project is None  # E == H: no projection
    assert tiny([layer("SA", "SDP")]).embeddings_project.weight.shape == (16, 8)
    with torch.no_grad():
        assert m(torch.tensor([[1, 2, 3, 4]])).last_hidden_state.shape == (1, 4, 8)


@pytest.mark.parametrize(
    "lay, message",
    [
        (layer("DSC", 9, heads=1), r"layer 0: DSC needs an even num_operation_heads, got 1 \(nearest valid: 2\)"),
        (layer("DSC", 4), "odd kernel size"),
        (layer("SA", "DCT"), "operation_parameter='DCT' is not valid for SA"),
        (layer("SA", "SDP", heads=5), "num_operation_heads=5 must be a positive divisor of hidden_size=16"),
        (layer("XX", "SDP"), "operation_type='XX'"),
    ],
)
def test_invalid_layers_are_named(lay, message):
    with pytest.raises(ValueError, match=message):
        tiny([lay])
    with pytest.raises(ValueError, match="layers is empty"):
        tiny([])


def test_sequence_longer_than_positions_is_an_error():
    m = tiny([layer("SA", "SDP")])
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=32"):
        m(torch.ones(1, 33, dtype=torch.long))
