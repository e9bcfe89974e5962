"""The paper's hidden covariance on transformers: the shared per-layer helper and NAS-Bench-BERT's encoders."""

import math

import numpy as np
import pytest
import torch

from tfnas.models.flexibert import FlexiBertConfig, FlexiBertModel
from tfnas.scoring import engine
from tfnas.scoring.api import UndefinedScore
from tfnas.scoring.scores import layer_covariances


def eig_covariance(m, k=1e-5):
    lam = np.linalg.eig(np.corrcoef(m))[0].real
    return float(-np.sum(np.log(lam + k) + 1.0 / (lam + k)))


def test_layer_covariances_per_layer_padding_and_summaries():
    g = torch.Generator().manual_seed(0)
    states = [torch.randn(3, 7, 5, generator=g, dtype=torch.float64), torch.zeros(3, 7, 5, dtype=torch.float64),
              torch.randn(21, 5, generator=g, dtype=torch.float64)]  # fmt: skip
    out = layer_covariances(states, "hc", max_layers=5, summaries=True)
    s1 = eig_covariance(states[0].reshape(-1, 5).numpy().T)
    s3 = eig_covariance(states[2].numpy().T)
    assert out["hc_l1"] == pytest.approx(s1, rel=1e-9) and out["hc_l3"] == pytest.approx(s3, rel=1e-9)
    assert isinstance(out["hc_l2"], UndefinedScore) and "exactly zero" in out["hc_l2"].reason
    assert isinstance(out["hc_l4"], UndefinedScore) and out["hc_l5"].reason == "the model has 3 layers"
    assert out["hc_last"] == out["hc_l3"] and out["hc_mean"] == pytest.approx((s1 + s3) / 2)
    assert set(layer_covariances(states[:1], "hc")) == {"hc_l1"}  # the RNN form: no padding, no summaries


def test_bert_hidden_covariance_on_each_layer_at_the_real_tokens():
    layer = {"operation_type": "SA", "operation_parameter": "SDP", "num_operation_heads": 2,
             "feed_forward_dimension": 24, "num_feed_forward": 1}  # fmt: skip
    cfg = FlexiBertConfig(vocab_size=60, embedding_size=8, hidden_size=16, max_position_embeddings=16,
                          layers=[layer, dict(layer, operation_type="LT", operation_parameter="DCT")])  # fmt: skip
    torch.manual_seed(0)
    model = FlexiBertModel(cfg).eval()
    ids = torch.randint(5, 60, (3, 10), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[2, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    res = engine.score("bert", model, batch, ["hidden_covariance"])
    with torch.no_grad():
        states = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1:]
    real = mask.bool()
    for i, h in enumerate(states, start=1):
        assert res.scores[f"hidden_covariance_l{i}"] == pytest.approx(eig_covariance(h[real].numpy().T), rel=1e-6)
    assert math.isnan(res.scores["hidden_covariance_l3"]) and res.reasons["hidden_covariance_l4"] == "the model has 2 layers"
    assert res.scores["hidden_covariance_last"] == res.scores["hidden_covariance_l2"]
