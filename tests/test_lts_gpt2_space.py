"""LTS GPT-2 space: reader order and ground truth, parameter counts of all 400 architectures, generator."""

import math
import shutil

import pytest
import torch
import yaml

from tfnas.models.lts_gpt2 import LtsGpt2LMHeadModel, parameter_counts
from tfnas.spaces.base import SearchSpace
from tfnas.spaces.lts_gpt2 import (
    CHOICES,
    SETS,
    SPACES,
    ConfigGenerator,
    LtsGpt2Lm1b,
    LtsGpt2Space,
    LtsGpt2Wt103,
    read_set,
    transformer_xl_counts,
)


@pytest.fixture(scope="module")
def spaces(data_dir):
    return {w: SPACES[w](benchmark=data_dir / "lts" / "saved_logs" / SETS[w]) for w in SETS}


def summaries(data_dir, which):
    root = data_dir / "lts" / "saved_logs" / SETS[which]
    return (yaml.safe_load(open(root / "ppl_summary.yaml")), yaml.safe_load(open(root / "params_summary.yaml")))


def test_order_is_config_then_j_numerically(spaces):
    for space in spaces.values():
        assert len(space) == 200 and space.family == "gpt" and isinstance(space, SearchSpace)
        keys = [a.benchmark_id for a in space]
        assert keys[:3] == ["config_0_j0", "config_0_j1", "config_0_j2"]
        assert keys[10] == "config_1_j0" and keys[20] == "config_2_j0" and keys[100] == "config_10_j0"
        assert [a.index for a in space] == list(range(200))
    assert spaces["wt103"].name == "lts_gpt2_wt103" and spaces["lm1b"].name == "lts_gpt2_lm1b"


def test_truth_is_the_summary(spaces, data_dir):
    for which, space in spaces.items():
        ppl, _ = summaries(data_dir, which)
        for a in space:
            e = ppl[a.benchmark_id]
            assert a.truth["valid_ppl"] == e["valid_ppl"] and a.truth["test_ppl"] == e["test_ppl"]
            assert a.truth["valid_loss"] == pytest.approx(math.log(e["valid_ppl"]), rel=1e-12)
            assert not a.meta["missing_ppl"] and a.meta["train_elapsed"] == e["train_elapsed"]
    a = spaces["wt103"][0]
    assert a.spec["d_inner"] == [1071, 640, 1286, 800, 1871] and a.truth["valid_ppl"] == pytest.approx(45.02297, rel=1e-6)
    assert spaces["wt103"].truth(0) == a.truth and a.meta["model_config"]["mem_len"] == 192


def test_worked_check_config_0_j0(spaces):
    counts = spaces["wt103"].num_params(spaces["wt103"][0])
    d, inner = 128, [1071, 640, 1286, 800, 1871]
    attn = 5 * (d * 3 * d + 3 * d + d * d + d)
    ffn = 2 * d * sum(inner) + sum(inner) + 5 * d
    assert (attn, ffn) == (330_240, 1_457_316)
    assert counts == {"Attn": attn, "FFN": ffn, "nonembedding": attn + ffn + 11 * 2 * d,
                      "AdaEmb": 6_631_088, "total": 8_505_006}  # fmt: skip
    assert counts["nonembedding"] == 1_790_372
    assert counts["total"] - counts["AdaEmb"] - counts["nonembedding"] == 50_264 + (2 * 256 + 2) + 256 * d


def test_parameter_counts_of_all_400_architectures(spaces):
    """WikiText-103: the decoder's counts are the summary's. LM1B: the summary counts the Transformer-XL layout."""
    for a in spaces["wt103"]:
        assert spaces["wt103"].num_params(a) == a.meta["params"], a.benchmark_id
    for a in spaces["lm1b"]:
        ours, theirs = spaces["lm1b"].num_params(a), a.meta["params"]
        assert transformer_xl_counts(a.spec) == transformer_xl_counts(a.meta["model_config"]) == theirs, a.benchmark_id
        d, layers = a.spec["d_model"], a.spec["n_layer"]
        # the exact difference: learned positions, attention (r_net + LayerNorm vs biases), final LayerNorm
        assert ours["FFN"] == theirs["FFN"]
        assert ours["AdaEmb"] - theirs["AdaEmb"] == a.spec["tgt_len"] * d
        assert theirs["Attn"] - ours["Attn"] == layers * (d * d - 2 * d)
        assert theirs["nonembedding"] - ours["nonembedding"] == layers * (d * d - 2 * d) - 2 * d
        assert theirs["total"] - theirs["AdaEmb"] - theirs["nonembedding"] == (
            ours["total"] - ours["AdaEmb"] - ours["nonembedding"]
        )


def test_every_benchmark_configuration_lies_in_the_choices(spaces):
    for which, space in spaces.items():
        assert all(CHOICES[which].contains(a.meta["model_config"]) for a in space)
        assert not CHOICES[which].contains({**space[0].meta["model_config"], "n_layer": 17})


def test_generator_is_seeded_and_inside_the_choices():
    for which in SETS:
        a, b = ConfigGenerator(which, seed=3).take(5), ConfigGenerator(which, seed=3).take(5)
        assert a == b and a != ConfigGenerator(which, seed=4).take(5)
        assert all(CHOICES[which].contains(c) for c in a)
    gen = LtsGpt2Wt103(benchmark="", generate=4, generator_seed=2)
    assert len(gen) == 4 and gen[3].meta["name"] == "gen-2-3" and gen[3].truth == {}
    assert gen[3].spec == gen.normalize(gen[3].meta["model_config"])
    with torch.device("meta"):
        model = LtsGpt2LMHeadModel(gen.config(gen[0]))
    assert parameter_counts(model)["total"] > 0


def test_generated_ones_follow_the_benchmark(data_dir):
    space = LtsGpt2Lm1b(benchmark=data_dir / "lts" / "saved_logs" / SETS["lm1b"], generate=2)
    assert len(space) == 202 and space[200].benchmark_id is None and space[199].benchmark_id == "config_19_j9"


def test_entry_without_perplexity_is_kept_and_flagged(data_dir, tmp_path):
    src = data_dir / "lts" / "saved_logs" / SETS["wt103"]
    for key in ("config_0/j0", "config_0/j1", "config_2/j0", "config_10/j3"):
        (tmp_path / key).mkdir(parents=True)
        shutil.copy(src / key / "model_config.yaml", tmp_path / key / "model_config.yaml")
    ppl, params = summaries(data_dir, "wt103")
    kept = {k: ppl[k] for k in ("config_0_j0", "config_2_j0", "config_10_j3")}
    (tmp_path / "ppl_summary.yaml").write_text(yaml.safe_dump(kept))
    (tmp_path / "params_summary.yaml").write_text(yaml.safe_dump(params))
    archs = read_set(tmp_path)
    assert [a.benchmark_id for a in archs] == ["config_0_j0", "config_0_j1", "config_2_j0", "config_10_j3"]
    assert archs[1].meta["missing_ppl"] and archs[1].truth == {}
    assert not archs[3].meta["missing_ppl"] and archs[3].truth["valid_ppl"] == ppl["config_10_j3"]["valid_ppl"]


def test_clear_errors(tmp_path, spaces):
    with pytest.raises(FileNotFoundError, match="neurips-lts"):
        read_set(tmp_path / "nowhere")
    with pytest.raises(TypeError, match="LtsGpt2Wt103 or LtsGpt2Lm1b"):
        LtsGpt2Space()
    with pytest.raises(ValueError, match="generate"):
        LtsGpt2Wt103(generate=-1)
    with pytest.raises(ValueError, match="block_layout"):
        LtsGpt2Wt103(block_layout="post")
    with pytest.raises(IndexError, match="arch=200 is out of range"):
        spaces["wt103"][200]


def test_build_is_seeded(spaces):
    space = spaces["wt103"]
    a, b = space.build(space[3], seed=1), space.build(space[3], seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = space.build(space[3], seed=2)
    assert not torch.equal(a.transformer.h[0].attn.qkv.weight, c.transformer.h[0].attn.qkv.weight)


def test_normal_form_and_index_of(spaces):
    wt, lm = spaces["wt103"], spaces["lm1b"]
    a = wt[17]
    short = {k: a.meta["model_config"][k] for k in ("n_layer", "d_model", "d_embed", "div_val", "n_head", "d_inner")}
    assert wt.normalize(short) == a.spec and wt.index_of(short) == 17
    assert a.spec["cutoffs"] == [19997, 39997, 50264] and a.spec["tie_projs"] == [False, True, True]
    b = lm[5]
    assert b.spec["d_embed"] == b.spec["d_model"] and b.spec["cutoffs"] == [50264] and b.spec["tgt_len"] == 32
    assert lm.index_of({k: b.meta["model_config"][k] for k in ("n_layer", "d_model", "div_val", "n_head", "d_inner")}) == 5
    with pytest.raises(KeyError, match="not in lts_gpt2_wt103"):
        wt.index_of({**short, "d_inner": [600] * short["n_layer"]})
    with pytest.raises(ValueError, match="n_head has"):
        wt.normalize({**short, "n_head": [2]})
    with pytest.raises(ValueError, match="mapping"):
        wt.normalize([1, 2])
    wt[17].spec["n_layer"] = 99  # a copy: the space is unchanged
    assert wt[17].spec["n_layer"] == short["n_layer"]
