"""BERT-space metrics, their shared building blocks, the grad pass and the scoring batch."""

import copy
import math

import numpy as np
import pytest
import scipy.fft
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tfnas.data import text as text_mod
from tfnas.data.text import TextScoringData
from tfnas.models.flexibert import FlexiBertConfig, FlexiBertModel, Fourier2d
from tfnas.scoring import engine
from tfnas.scoring.api import UndefinedScore
from tfnas.scoring.bert.passes import chunks, collect, grad_pass_flops, micro_batch_size
from tfnas.scoring.registry import available
from tfnas.scoring.scores import cosine_score, covariance_score, logdet

# ---------------------------------------------------------------- building blocks


def eig_covariance(m, k=1e-5):
    """docs/METRICS.md's formula with a general eigen-solver, as the paper computed it."""
    lam = np.linalg.eig(np.corrcoef(m))[0].real
    return -np.sum(np.log(lam + k) + 1.0 / (lam + k))


@pytest.mark.parametrize("shape", [(6, 40), (30, 12), (50, 50), (128, 512)])
def test_covariance_score_matches_eig_formula(shape):
    rng = np.random.default_rng(sum(shape))
    m = rng.normal(size=shape) @ np.diag(rng.uniform(0.1, 3, size=shape[1]))
    m[1] = 0.5 * m[0] + 0.1 * m[1]  # some correlated rows
    expected = eig_covariance(m)
    assert covariance_score(m) == pytest.approx(expected, rel=1e-8)
    assert covariance_score(torch.tensor(m, dtype=torch.float32)) == pytest.approx(
        eig_covariance(torch.tensor(m, dtype=torch.float32).double().numpy()), rel=1e-8
    )


def test_covariance_score_rank_deficient_uses_k():
    # Rows summing to zero (as LayerNorm gradients do) make C singular: one λ = 0 costs ln k + 1/k.
    rng = np.random.default_rng(0)
    m = rng.normal(size=(8, 100))
    m -= m.mean(axis=0, keepdims=True)
    s = covariance_score(m)
    assert s == pytest.approx(eig_covariance(m), rel=1e-8)
    assert s < -(1 / 1e-5) * 0.99


def test_covariance_score_constant_rows_are_undefined():
    m = np.random.default_rng(1).normal(size=(5, 20))
    m[2] = 3.0
    m[4] = 0.0
    with pytest.raises(UndefinedScore, match="2 of 5 rows are constant"):
        covariance_score(m)
    with pytest.raises(UndefinedScore, match="non-finite"):
        covariance_score(np.full((3, 3), np.nan))


def test_cosine_score_by_hand():
    # Rows (1,0), (0,1), (1,1): |cos| off-diagonal = 0, 1/√2, 1/√2 (each twice).
    m = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    expected = 1 - (4 * (2**-0.5) ** (1 / 20)) / (2 * (9 - 3))
    assert cosine_score(m) == pytest.approx(expected, rel=1e-12)
    assert cosine_score(np.eye(4)) == pytest.approx(1.0)
    assert cosine_score(np.ones((3, 5))) == pytest.approx(0.5)  # identical rows
    with pytest.raises(UndefinedScore, match="1 of 2 rows are zero"):
        cosine_score(np.array([[1.0, 2.0], [0.0, 0.0]]))


def test_logdet():
    a = np.random.default_rng(2).normal(size=(6, 6))
    assert logdet(torch.tensor(a)) == pytest.approx(np.log(abs(np.linalg.det(a))), rel=1e-10)
    with pytest.raises(UndefinedScore, match="singular"):
        logdet(torch.ones(3, 3))
    with pytest.raises(ValueError, match="square"):
        logdet(torch.ones(2, 3))


# ---------------------------------------------------------------- metrics on a tiny model


def lay(op, param, heads=2, ffn=24, n=1):
    return {
        "operation_type": op,
        "operation_parameter": param,
        "num_operation_heads": heads,
        "feed_forward_dimension": ffn,
        "num_feed_forward": n,
    }


LAYERS = [
    lay("SA", "WMA", 2, n=2),
    lay("LT", "DFT", 4),
    lay("DSC", 5, 2, n=3),
    lay("SA", "SDP", 4),
    lay("LT", "DCT", 2),
    lay("DSC", 9, 4),
]
NAMES = [
    "synaptic_diversity",
    "synaptic_saliency",
    "activation_distance",
    "jacobian_covariance",
    "jacobian_cosine",
    "num_params",
    "head_importance",
    "head_confidence",
    "head_softmax_confidence",
]


def tiny_model(hidden=16, layers=LAYERS, use_mask=True):
    cfg = FlexiBertConfig(
        vocab_size=60, embedding_size=8, hidden_size=hidden, max_position_embeddings=16, layers=layers,
        use_attention_mask=use_mask,
    )
    torch.manual_seed(0)
    return FlexiBertModel(cfg)


def tiny_batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 60, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[2, 7:] = 0
    ids[2, 7:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def manual_forward(model, batch):
    """The model's forward re-done with functional ops, recording what the metrics describe."""
    rec = {"gelu_first": [], "confidence": [], "softmax": [], "block_linears": []}
    ids, mask = batch["input_ids"], batch["attention_mask"].float()
    emb = model.embeddings
    x = emb.word_embeddings.weight[ids] + emb.token_type_embeddings.weight[0]
    x = x + emb.position_embeddings.weight[: ids.shape[1]]
    x = F.layer_norm(x, (x.shape[-1],), emb.LayerNorm.weight, emb.LayerNorm.bias, 1e-12)
    x = F.linear(x, model.embeddings_project.weight, model.embeddings_project.bias)
    neg = (1 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
    conf = lambda o: o.amax(dim=1).mean().item()
    for layer in model.encoder.layer:
        op = layer.operation
        if op.operation_type == "SA":
            q = F.linear(x, op.query.weight, op.query.bias)
            k = F.linear(x, op.key.weight, op.key.bias)
            v = F.linear(x, op.value.weight, op.value.bias)
            rec["confidence"] += [conf(q), conf(k), conf(v)]
            if op.wma is not None:
                q = F.linear(q, op.wma.weight)
                rec["confidence"].append(conf(q))
            h = op.num_heads
            split = lambda t: t.view(t.shape[0], t.shape[1], h, -1).transpose(1, 2)
            p = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(q.shape[-1] // h) + neg, -1)
            rec["softmax"].append(p.amax(dim=1).mean().item())
            x_op = op(x, model.extended_mask(batch["attention_mask"], x.dtype))
        elif op.operation_type == "LT":
            p_in = F.linear(x, op.input_projection.weight, op.input_projection.bias)
            rec["confidence"].append(conf(p_in))
            h = op.num_heads
            heads = p_in.detach().view(p_in.shape[0], p_in.shape[1], h, -1).permute(0, 2, 1, 3).numpy()
            if isinstance(op.transform, Fourier2d):
                t = np.fft.fft2(heads).real
            else:
                t = scipy.fft.dctn(heads, type=2, axes=(-2, -1))
            rec["softmax"].append(torch.softmax(torch.tensor(t), -1).amax(dim=1).mean().item())
            x_op = torch.tensor(t, dtype=torch.float32).permute(0, 2, 1, 3).reshape(x.shape)
        else:
            q = F.linear(x, op.query.weight, op.query.bias)
            k = F.linear(x, op.key.weight, op.key.bias)
            rec["confidence"] += [conf(q), conf(k), conf(F.linear(x, op.value.weight, op.value.bias))]
            h = op.num_heads
            split = lambda t: t.view(t.shape[0], t.shape[1], h, -1).transpose(1, 2)
            p = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(op.head_size) + neg, -1)
            rec["softmax"].append(p.amax(dim=1).mean().item())
            x_op = op(x, model.extended_mask(batch["attention_mask"], x.dtype))
        ff = layer.feed_forward
        y = x_op
        for lin in ff.ffn[:-1]:
            y = F.gelu(F.linear(y, lin.weight, lin.bias))
            rec["gelu_first"].append(y[0].detach())
        y = F.linear(y, ff.ffn[-1].weight, ff.ffn[-1].bias) + x_op
        x = F.layer_norm(y, (x.shape[-1],), ff.LayerNorm.weight, ff.LayerNorm.bias, 1e-12)
    return x, rec


@pytest.fixture(scope="module")
def scored():
    model = tiny_model()
    batch = tiny_batch()
    before = engine.PASS_COUNTS[("bert", "grad")]
    forwards, backwards = [], []
    model.register_forward_hook(lambda m, i, o: forwards.append(1))
    model.embeddings.position_embeddings.weight.register_hook(lambda g: backwards.append(1))
    res = engine.score("bert", model, batch, NAMES)
    return model, batch, res, engine.PASS_COUNTS[("bert", "grad")] - before, len(forwards), len(backwards)


def test_all_metrics_one_forward_one_backward(scored):
    model, batch, res, passes, forwards, backwards = scored
    assert passes == 1 and forwards == 1 and backwards == 1
    single = ("jacobian_covariance", "jacobian_cosine", "num_params")
    expected = set(NAMES) | {f"{n}_normalized" for n in NAMES if n not in single}
    assert set(res.scores) == expected and res.reasons == {}
    assert all(math.isfinite(v) for v in res.scores.values())
    assert set(available("bert")) >= set(NAMES)
    assert all(p.grad is None for p in model.parameters())  # the pass leaves the model clean


@pytest.fixture(scope="module")
def reference(scored):
    """Independent manual forward, and a plain backward of Σ o on a copy of the model (no hooks, no pass)."""
    model, batch, *_ = scored
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        out, rec = manual_forward(m, batch)
    o = m(**batch).last_hidden_state
    torch.testing.assert_close(out, o, rtol=1e-4, atol=1e-4)
    m.zero_grad()
    o.sum().backward()
    return m, rec


def test_weight_metrics_against_grads(scored, reference):
    _, _, res, *_ = scored
    m, _ = reference
    sal, div, imp = [], [], []
    for layer in m.encoder.layer:
        op = layer.operation
        for lin in layer.feed_forward.ffn:
            sal.append((lin.weight * lin.weight.grad).abs().sum().item())
        linears = {
            "SA": ["query", "key", "value", "wma", "dense"],
            "LT": ["input_projection"],
            "DSC": ["query", "key", "value", "kernel", "conv_value", "dense"],
        }[op.operation_type]
        own = {
            "SA": ["query", "key", "value", "wma"],
            "LT": ["input_projection"],
            "DSC": ["query", "key", "value", "conv_value"],
        }
        for n in linears:
            lin = getattr(op, n, None)
            if lin is None:
                continue
            w, g = lin.weight.detach().double().numpy(), lin.weight.grad.double().numpy()
            div.append(np.linalg.svd(w, compute_uv=False).sum() * np.linalg.svd(g, compute_uv=False).sum())
            if n in own[op.operation_type]:
                imp.append(np.abs(w * g).sum())
    assert len(sal) == sum(spec["num_feed_forward"] + 1 for spec in LAYERS) == 15
    assert res.scores["synaptic_saliency"] == pytest.approx(sum(sal), rel=1e-4)
    assert res.scores["synaptic_saliency_normalized"] == pytest.approx(sum(sal) / 15, rel=1e-4)
    assert len(div) == 5 + 1 + 6 + 4 + 1 + 6
    assert res.scores["synaptic_diversity"] == pytest.approx(sum(div), rel=1e-4)
    assert res.scores["synaptic_diversity_normalized"] == pytest.approx(sum(div) / len(div), rel=1e-4)
    assert len(imp) == 4 + 1 + 4 + 3 + 1 + 4
    assert res.scores["head_importance"] == pytest.approx(sum(imp), rel=1e-4)
    assert res.scores["head_importance_normalized"] == pytest.approx(sum(imp) / len(imp), rel=1e-4)
    assert res.scores["num_params"] == sum(p.numel() for p in m.parameters())


def test_activation_and_confidence_metrics_against_manual_forward(scored, reference):
    _, _, res, *_ = scored
    _, rec = reference
    sums = []
    for out in rec["gelu_first"]:
        c = (out > 0).double()
        sums.append(float((c @ c.T + (1 - c) @ (1 - c).T).sum()))  # the [S, S] kernel, summed
    assert len(sums) == 2 + 1 + 3 + 1 + 1 + 1
    assert res.scores["activation_distance"] == pytest.approx(sum(sums), rel=1e-12)
    assert res.scores["activation_distance_normalized"] == pytest.approx(sum(sums) / len(sums), rel=1e-12)
    assert len(rec["confidence"]) == 4 + 1 + 3 + 3 + 1 + 3
    assert res.scores["head_confidence"] == pytest.approx(sum(rec["confidence"]), rel=1e-4)
    assert res.scores["head_confidence_normalized"] == pytest.approx(np.mean(rec["confidence"]), rel=1e-4)
    assert len(rec["softmax"]) == 6
    assert res.scores["head_softmax_confidence"] == pytest.approx(sum(rec["softmax"]), rel=1e-4)
    assert res.scores["head_softmax_confidence_normalized"] == pytest.approx(np.mean(rec["softmax"]), rel=1e-4)


def test_jacobian_metrics_against_position_grad(scored, reference):
    _, _, res, *_ = scored
    m, _ = reference
    g = m.embeddings.position_embeddings.weight.grad.double().numpy()  # [16, 8]
    assert np.abs(g[10:]).max() == 0 and np.abs(g[:10]).min() > 0  # only the 10 used positions
    assert res.scores["jacobian_covariance"] == pytest.approx(eig_covariance(g.T), rel=1e-4)
    n = g.T / np.linalg.norm(g.T, axis=1, keepdims=True)
    a = np.abs(n @ n.T) - np.eye(8)
    a[np.diag_indices(8)] = 0
    assert res.scores["jacobian_cosine"] == pytest.approx(1 - (a ** (1 / 20)).sum() / (2 * (64 - 8)), rel=1e-6)


def test_compat_passes_no_mask_and_importance_rule():
    seen = []
    batch = tiny_batch()
    model = tiny_model(use_mask=False)
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(dict(kw)), with_kwargs=True)
    engine.score("bert", model, batch, ["head_confidence"], paper_compat=True)
    engine.score("bert", model, batch, ["head_confidence"], paper_compat=False)
    assert "attention_mask" not in seen[0] and "token_type_ids" in seen[0]
    assert torch.equal(seen[1]["attention_mask"], batch["attention_mask"])
    # At H = 256 the paper's "output size >= 128" rule selects exactly the listed projections.
    kinds = [("SA", "WMA", 4), ("SA", "SDP", 2), ("LT", "DCT", 4), ("DSC", 9, 4), ("DSC", 5, 2)]
    big = tiny_model(hidden=256, layers=[lay(o, p, h, ffn=8) for o, p, h in kinds])
    names = lambda compat: [n for n, *_ in collect(big, batch, compat).importance]
    assert names(True) == names(False)
    assert "layer3.operation.conv_value" in names(True) and "layer3.operation.kernel" not in names(True)
    # At H = 128 DSC's projections (64 wide) fall below the threshold.
    small = tiny_model(hidden=128, layers=[lay("DSC", 5, 2, ffn=8)])
    assert [n for n, *_ in collect(small, batch, True).importance] == []
    assert len(collect(small, batch, False).importance) == 4


# ---------------------------------------------------------------- micro-batched grad pass, its FLOPs


def assert_same_sum(got, want):
    """Equal up to float32 summation order: max error ≤ 1e-5 of the largest entry (entries may cancel)."""
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())


def assert_same_scores(a, b, rel):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=rel, nan_ok=True), k


@pytest.mark.parametrize("compat", [False, True])
def test_micro_batched_grad_pass_equals_whole_batch(compat):
    """Chunks of 1 or 2 sequences (padding in the last) give the whole batch's pass outputs and scores.

    At initialisation (LayerNorm gains 1) the gradient of Σ o is round-off
    (docs/METRICS.md, "GPT family"), which a tiny model's differently blocked
    small products change; random gains give Σ o a real gradient to compare.
    """
    batch = tiny_batch()
    model = tiny_model(use_mask=not compat).eval()  # as the engine runs it: no dropout
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(m.weight.numel()))
    whole = collect(model, batch, compat, hidden_states=True)
    reference = engine.score("bert", model, batch, NAMES + ["hidden_covariance"], paper_compat=compat,
                             options={"micro_batch_tokens": 10**6})
    for m in (1, 2):
        part = collect(model, batch, compat, hidden_states=True, micro_batch=m, min_chunk=1)
        for got, want in [(part.mixing, whole.mixing), (part.feed_forward, whole.feed_forward),
                          (part.importance, whole.importance)]:
            assert [n for n, *_ in got] == [n for n, *_ in want]
            for (_, w1, g1), (_, w2, g2) in zip(got, want):
                assert torch.equal(w1, w2)
                assert_same_sum(g1, g2)
        assert_same_sum(part.position_grad, whole.position_grad)
        for x, y in zip(part.activations, whole.activations):
            # Forward values: equal, but a one-sequence chunk may take another matrix-product kernel on some
            # CPUs (measured 1.5e-8 on entries up to 0.3 on an AMD EPYC; two sequences were bit-identical).
            assert_same_sum(x, y)
        assert part.names == whole.names
        assert part.confidence == pytest.approx(whole.confidence, rel=1e-6)  # float64 sums of those values
        assert part.softmax_confidence == pytest.approx(whole.softmax_confidence, rel=1e-6)
        for x, y in zip(part.hidden_states, whole.hidden_states):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("arch, compat", [(3, True), (5, False)])
def test_micro_batched_scores_equal_whole_batch_on_nasbench_bert(data_dir, arch, compat):
    """Real architectures (DSC, LT) on real text: the engine's chunks (16 + 24 sequences) vs the
    whole batch (40 × 32 tokens), every paper metric within 1e-6.

    Their gradient metrics are round-off (docs/METRICS.md, "Memory"): this checks that the chunks keep every
    row's float32 arithmetic. Chunks below :data:`MIN_CHUNK` sequences would not (DSC's pointwise convolution
    changes algorithm), which the last assertion shows, so that the test would notice if torch moved the switch.
    """
    from tfnas.spaces.nasbench_bert.space import NasBenchBERT

    space = NasBenchBERT(str(data_dir / "nasbench_bert" / "BERT_benchmark.json"))
    batch = TextScoringData(data_dir, batch_size=40, seq_len=32).scoring_batch(0)
    names = NAMES + ["hidden_covariance"]
    model = space.build(space[arch], seed=0, paper_compat=compat).eval()  # eval, as the engine scores
    whole = engine.score("bert", model, batch, names, paper_compat=compat, options={"micro_batch_tokens": 10**6})
    chunked = engine.score("bert", model, batch, names, paper_compat=compat, options={"micro_batch_tokens": 32})
    assert [c.stop - c.start for c in chunks(40, micro_batch_size(32, 32))] == [16, 24]
    assert whole.reasons == chunked.reasons
    assert_same_scores(chunked.scores, whole.scores, rel=1e-6)
    small = collect(model, batch, compat, micro_batch=8, min_chunk=1)
    whole_grads = collect(model, batch, compat)
    assert not all(torch.equal(a[2], b[2]) for a, b in zip(small.mixing, whole_grads.mixing))


def test_chunks():
    sizes = lambda *a: [c.stop - c.start for c in chunks(*a)]  # noqa: E731
    assert sizes(128, 16) == [16] * 8
    assert sizes(128, None) == [128] and sizes(8, 16) == [8] and sizes(3, 1, 1) == [1, 1, 1]
    assert sizes(40, 8) == [16, 24]  # at least MIN_CHUNK = 16; the short remainder joins the last chunk
    assert sizes(20, 16) == [20] and sizes(33, 16) == [16, 17]
    with pytest.raises(ValueError, match="positive"):
        chunks(10, 0)


def test_micro_batch_size():
    assert micro_batch_size(512) == 16 and micro_batch_size(128) == 64 and micro_batch_size(10000) == 1
    with pytest.raises(ValueError, match="positive"):
        micro_batch_size(512, 0)
    with pytest.raises(ValueError, match="positive"):
        collect(tiny_model(), tiny_batch(), micro_batch=0)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("embedding", [8, 16])
def test_grad_pass_flops_match_torch_flop_counter(layer, embedding):
    """The analytic count equals torch's FlopCounterMode over the pass (products only; FFTs are not counted there).

    FlopCounterMode ignores ``groups`` in ``convolution_backward`` and so overcounts
    the depthwise key convolution's backward; it is replaced here by its true cost,
    the forward convolutions' (the pass reads no key-convolution weight gradient).
    """
    cfg = FlexiBertConfig(vocab_size=60, embedding_size=embedding, hidden_size=16, max_position_embeddings=16,
                          layers=[layer])
    torch.manual_seed(0)
    model = FlexiBertModel(cfg).eval()
    with FlopCounterMode(display=False) as counter:
        collect(model, tiny_batch())
    counts = {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}
    counted = sum(counts.values()) - counts.get("aten.convolution_backward", 0) + counts.get("aten.convolution", 0)
    flops = grad_pass_flops(cfg, 3, 10)
    assert counted == flops["matmul_forward"] + flops["matmul_backward"]
    assert (flops["fft_forward"] > 0) == (layer["operation_type"] == "LT")
    assert flops["total"] == pytest.approx(flops["matmul_forward"] + flops["matmul_backward"] + 2 * flops["fft_forward"])


# ---------------------------------------------------------------- scoring batch


def test_ptb_scoring_batch(data_dir):
    data = TextScoringData(data_dir, batch_size=4, seq_len=32)
    tok = data.tokenizer
    b0, b1 = data.scoring_batch(0), data.scoring_batch(1)
    for b in (b0, b1):
        assert set(b) == {"input_ids", "attention_mask", "token_type_ids"}
        assert all(t.shape == (4, 32) and t.dtype == torch.long for t in b.values())
        assert torch.all(b["input_ids"][:, 0] == tok.cls_token_id)
        assert torch.all(b["input_ids"][:, -1] == tok.sep_token_id)
        inner = b["input_ids"][:, 1:-1]
        assert not torch.isin(inner, torch.tensor([tok.cls_token_id, tok.sep_token_id, tok.pad_token_id])).any()
        assert torch.all(b["attention_mask"] == 1) and torch.all(b["token_type_ids"] == 0)
    # Consecutive rows of the text stream, tokenized independently line by line.
    lines = (data_dir / "ptb" / "ptb.test.txt").read_text().splitlines()[:60]
    stream = [i for line in lines for i in tok.convert_tokens_to_ids(tok.tokenize(line))]
    got = torch.cat([b0["input_ids"][:, 1:-1].reshape(-1), b1["input_ids"][:, 1:-1].reshape(-1)]).tolist()
    assert got == stream[: 8 * 30]
    assert data.describe() == {"source": "file", "tokenizer": "bert-base-uncased", "batch_size": 4, "seq_len": 32,
                               "path": "ptb.test.txt"}


def test_ptb_paper_sized_batch_and_range(data_dir):
    data = TextScoringData(data_dir)  # 128 × 512
    assert data.num_batches() == 1
    b = data.scoring_batch(0)
    assert b["input_ids"].shape == (128, 512)
    with pytest.raises(IndexError, match=r"batch_index=1 needs rows 128..255, but .* gives only 195 rows"):
        data.scoring_batch(1)
    with pytest.raises(ValueError, match="unknown text source"):
        TextScoringData(data_dir, source="wiki")


def test_openwebtext_source(monkeypatch, data_dir):
    import datasets

    def offline(*a, **k):
        raise ConnectionError("no network")

    text_mod._openwebtext_documents.cache_clear()
    monkeypatch.setattr(datasets, "load_dataset", offline)
    data = TextScoringData(data_dir, source="openwebtext", batch_size=2, seq_len=8)
    with pytest.raises(RuntimeError, match="could not stream OpenWebText .*no network.*source='file'"):
        data.scoring_batch(0)

    texts = ["short doc", "a much longer document that needs truncating here", "third", "fourth one"]
    docs = [{"text": t} for t in texts]
    calls = []

    def fake(name, split, streaming):
        calls.append((name, split, streaming))
        return iter(docs)

    text_mod._openwebtext_documents.cache_clear()
    monkeypatch.setattr(datasets, "load_dataset", fake)
    b0, b1 = data.scoring_batch(0), data.scoring_batch(1)
    tok = data.tokenizer
    assert calls[0] == ("Skylion007/openwebtext", "train", True)
    assert b0["input_ids"].shape == (2, 8)
    short = tok.convert_tokens_to_ids(tok.tokenize("short doc"))
    pads = [tok.pad_token_id] * (6 - len(short))
    assert b0["input_ids"][0].tolist() == [tok.cls_token_id, *short, tok.sep_token_id] + pads
    assert b0["attention_mask"][0].tolist() == [1] * (2 + len(short)) + [0] * (6 - len(short))
    assert b0["input_ids"][1, -1] == tok.sep_token_id and torch.all(b0["attention_mask"][1] == 1)
    third = tok.convert_tokens_to_ids(tok.tokenize("third"))
    assert b1["input_ids"][0, : 2 + len(third)].tolist() == [tok.cls_token_id, *third, tok.sep_token_id]
    assert data.describe()["dataset"] == "Skylion007/openwebtext"
    text_mod._openwebtext_documents.cache_clear()


def test_covariance_score_eigen_fallback(monkeypatch):
    m = np.random.default_rng(4).normal(size=(7, 30))
    expected = covariance_score(m)
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda a: (a, torch.tensor(1)))  # "not positive definite"
    assert covariance_score(m) == pytest.approx(expected, rel=1e-10)
    assert covariance_score(m) == pytest.approx(eig_covariance(m), rel=1e-8)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_covariance_score_one_non_finite_entry_is_undefined(bad):
    m = np.random.default_rng(0).normal(size=(6, 40))
    m[2, 7] = bad
    with pytest.raises(UndefinedScore, match="non-finite"):
        covariance_score(m)


def test_covariance_score_gram_overflow_is_undefined():
    m = np.random.default_rng(0).normal(size=(6, 40))
    m[3] *= 1e200  # finite, but its squares overflow float64
    with pytest.raises(UndefinedScore, match="overflows"):
        covariance_score(m)
