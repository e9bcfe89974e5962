"""The scoring engine's contract: each pass once, subsumption, honest needs, failure isolation."""

from __future__ import annotations

import math

import pytest
import torch

from tfnas.scoring import engine
from tfnas.scoring import api
from tfnas.scoring.api import UndefinedScore, register, register_pass

CALLS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _unregister_toys():
    """The toy passes and metrics below leave the registry after this module (other tests list it)."""
    yield
    for table in (api.METRICS, api.PASSES):
        for key in [k for k in table if k[1].startswith("_t_")]:
            del table[key]


@register_pass("rnn", "_t_small", served_by=("_t_big",))
def _small(ctx):
    CALLS.append("small")
    return {"v": 1.0}


@register_pass("rnn", "_t_big")
def _big(ctx):
    CALLS.append("big")
    return {"v": 1.0, "w": 2.0}


@register_pass("rnn", "_t_broken")
def _broken(ctx):
    CALLS.append("broken")
    raise RuntimeError("forward exploded")


@register("_t_reads_small", "rnn", needs=["_t_small"])
def _m1(ctx):
    return {"_t_reads_small": ctx.get("_t_small")["v"]}


@register("_t_reads_big", "rnn", needs=["_t_big"])
def _m2(ctx):
    return {"_t_reads_big": ctx.get("_t_big")["w"]}


@register("_t_undeclared", "rnn", needs=["_t_small"])
def _m3(ctx):
    return {"_t_undeclared": ctx.get("_t_big")["w"]}


@register("_t_undefined", "rnn", needs=[])
def _m4(ctx):
    raise UndefinedScore("state is constant")


@register("_t_two", "rnn", needs=["_t_broken"], outputs=["_t_two_a", "_t_two_b"])
def _m5(ctx):
    ctx.get("_t_broken")
    return {}


@register("_t_two_more", "rnn", needs=["_t_broken"])
def _m6(ctx):
    ctx.get("_t_broken")
    return {}


@register("_t_overflow", "rnn", needs=[])
def _m7(ctx):
    return {"_t_overflow": math.inf}


@register("_t_half", "rnn", needs=[], outputs=["_t_half_ok", "_t_half_undefined"])
def _m8(ctx):
    return {"_t_half_ok": 3.0, "_t_half_undefined": UndefinedScore("layer 2 is constant")}


MODEL = torch.nn.Linear(2, 2)


def _score(*names):
    CALLS.clear()
    return engine.score("rnn", MODEL, None, list(names))


def test_a_pass_served_by_a_larger_planned_pass_does_not_run():
    r = _score("_t_reads_small", "_t_reads_big")
    assert CALLS == ["big"]
    assert r.scores == {"_t_reads_small": 1.0, "_t_reads_big": 2.0}
    _score("_t_reads_small")
    assert CALLS == ["small"]


def test_reading_an_undeclared_pass_is_an_error_recorded_as_nan():
    r = _score("_t_undeclared")
    assert math.isnan(r.scores["_t_undeclared"])
    assert "not declared" in r.reasons["_t_undeclared"]


def test_undefined_failed_and_non_finite_scores_keep_their_reasons():
    r = _score("_t_undefined", "_t_two", "_t_two_more", "_t_overflow", "_t_reads_small")
    assert r.reasons["_t_undefined"] == "state is constant"
    # A failing pass runs once, and every metric that needs it is NaN with the error.
    assert CALLS.count("broken") == 1
    for k in ("_t_two_a", "_t_two_b", "_t_two_more"):
        assert math.isnan(r.scores[k]) and "forward exploded" in r.reasons[k]
    assert r.scores["_t_overflow"] == math.inf and "non-finite" in r.reasons["_t_overflow"]
    assert r.scores["_t_reads_small"] == 1.0 and "_t_reads_small" not in r.reasons


def test_one_undefined_output_leaves_the_others():
    r = _score("_t_half")
    assert r.scores["_t_half_ok"] == 3.0 and "_t_half_ok" not in r.reasons
    assert math.isnan(r.scores["_t_half_undefined"])
    assert r.reasons["_t_half_undefined"] == "layer 2 is constant"


def test_model_mode_is_restored_and_grad_works_under_inference_mode():
    MODEL.train()
    with torch.inference_mode():
        _score("_t_reads_small")
    assert MODEL.training


def test_duplicate_registration_is_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register("_t_reads_small", "rnn", needs=[])(lambda ctx: {})
    with pytest.raises(ValueError, match="unknown space"):
        register("x", "cnn", needs=[])
