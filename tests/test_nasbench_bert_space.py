"""NAS-Bench-BERT space: benchmark reader, validation, generator, builder and parameter counts."""

import json

import numpy as np
import pytest
import torch

from tfnas.models.flexibert import FlexiBertModel
from tfnas.spaces.nasbench_bert.benchmark import SCORE_KEYS, load_benchmark
from tfnas.spaces.nasbench_bert.definition import ConfigGenerator, generate_config, load_search_space
from tfnas.spaces.nasbench_bert.space import NasBenchBERT, count_params, model_config


@pytest.fixture(scope="module")
def bench_path(data_dir):
    return data_dir / "nasbench_bert" / "BERT_benchmark.json"


@pytest.fixture(scope="module")
def raw(bench_path):
    with open(bench_path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def space():
    return NasBenchBERT()


def test_benchmark_matches_raw_file(bench_path, raw):
    archs = load_benchmark(bench_path)
    assert len(archs) == len(raw) == 500
    for i, (a, e) in enumerate(zip(archs, raw)):
        assert a.index == i and a.benchmark_id == str(e["id"])
        ov = e["hparams"]["model_hparam_overrides"]
        assert a.spec["hidden_size"] == ov["hidden_size"]
        assert len(a.spec["layers"]) == len(ov["nas_config"]["encoder_layers"])
        for lay, rl in zip(a.spec["layers"], ov["nas_config"]["encoder_layers"]):
            dsc = rl["operation_type"] == "DSC"
            assert lay == {k: (int(v) if k == "operation_parameter" and dsc else v) for k, v in rl.items()}
            if lay["operation_type"] == "DSC":
                assert type(lay["operation_parameter"]) is int
            else:
                assert type(lay["operation_parameter"]) is str
        assert set(a.truth) == set(SCORE_KEYS)
        assert all(type(v) is float for v in a.truth.values())
        assert a.meta["hparams"] == e["hparams"] and a.meta["time_to_train"] == e["time_to_train"]
        # The benchmark's GLUE score is the mean of its eight task scores.
        assert a.truth["glue"] == pytest.approx(np.mean([a.truth[k] for k in SCORE_KEYS[:-1]]), abs=1e-9)


def test_benchmark_is_cached_per_path(bench_path):
    a, b = load_benchmark(bench_path), load_benchmark(str(bench_path))
    assert a is not b and all(x is y for x, y in zip(a, b))


def _write(tmp_path, entries, data_dir):
    p = tmp_path / "BERT_benchmark.json"
    p.write_text(json.dumps(entries))
    (tmp_path / "search_space.json").write_text((data_dir / "nasbench_bert" / "search_space.json").read_text())
    return p


def test_id_mismatch_is_a_clear_error(tmp_path, raw, data_dir):
    p = _write(tmp_path, [raw[1], raw[0]], data_dir)
    with pytest.raises(ValueError, match=r"entry 0: id is 1 but its position is 0"):
        load_benchmark(p)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_operation_heads", 3, r"entry 1 \(id 1\), layer 0: num_operation_heads=3 is not in the search space"),
        ("operation_parameter", "DFT", r"entry 1 \(id 1\), layer 0: operation_parameter='DFT' is not valid for SA"),
        ("feed_forward_dimension", 2048, r"layer 0: feed_forward_dimension=2048"),
        ("operation_type", "RNN", r"layer 0: operation_type='RNN'"),
    ],
)
def test_invalid_config_names_entry_and_field(tmp_path, raw, data_dir, field, value, message):
    bad = json.loads(json.dumps(raw[:2]))
    layer = bad[1]["hparams"]["model_hparam_overrides"]["nas_config"]["encoder_layers"][0]
    layer.update({"operation_type": "SA", "operation_parameter": "SDP"})
    layer[field] = value
    with pytest.raises(ValueError, match=message):
        load_benchmark(_write(tmp_path, bad, data_dir))


def test_invalid_hidden_size_and_depth(tmp_path, raw, data_dir):
    bad = json.loads(json.dumps(raw[:1]))
    bad[0]["hparams"]["model_hparam_overrides"]["hidden_size"] = 512
    with pytest.raises(ValueError, match=r"entry 0 \(id 0\): hidden_size=512"):
        load_benchmark(_write(tmp_path, bad, data_dir))
    bad = json.loads(json.dumps(raw[:1]))
    del bad[0]["hparams"]["model_hparam_overrides"]["nas_config"]["encoder_layers"][0]
    with pytest.raises(ValueError, match=r"3 encoder layers"):
        load_benchmark(_write(tmp_path, bad, data_dir))


def test_generator_is_reproducible_and_valid():
    sp = load_search_space()
    a, b = ConfigGenerator(7).take(200), ConfigGenerator(7).take(200)
    assert a == b
    assert a != ConfigGenerator(8).take(200)
    assert generate_config(np.random.default_rng(3)) == generate_config(np.random.default_rng(3))
    seen = set()
    for i, cfg in enumerate(a):
        assert sp.validate(cfg, f"generated {i}") == cfg
        seen |= {(lay["operation_type"], lay["operation_parameter"]) for lay in cfg["layers"]}
    assert seen == {("SA", "SDP"), ("SA", "WMA"), ("LT", "DFT"), ("LT", "DCT"), ("DSC", 5), ("DSC", 9)}
    assert {c["hidden_size"] for c in a} == {128, 256} and {len(c["layers"]) for c in a} == {2, 4}


def test_space_indexing_and_generated_tail(bench_path):
    sp = NasBenchBERT(bench_path, generate=3, generator_seed=5)
    assert len(sp) == 503 and sp.name == "nasbench_bert" and sp.metric_space == "bert"
    assert sp[499].benchmark_id == "499" and sp[500].benchmark_id is None and sp[500].truth == {}
    assert [sp[500 + j].spec for j in range(3)] == ConfigGenerator(5).take(3)
    assert sp[502].meta["name"] == "gen-5-2"
    with pytest.raises(IndexError, match="arch=503 is out of range"):
        sp[503]
    assert len(NasBenchBERT()) == 500  # default: the data folder's benchmark
    for only in (NasBenchBERT(generate=2, generator_seed=5), NasBenchBERT("", generate=2, generator_seed=5)):
        assert len(only) == 2 and only[0].spec == sp[500].spec and only[0].index == 0
    with pytest.raises(ValueError, match="generate must be an int >= 0"):
        NasBenchBERT(generate=-1)


def _expected_params(spec, compat):
    """Parameter count from docs/SPACES.md §2's rules, written out independently of the model code."""
    h = 256 if compat else spec["hidden_size"]
    e = 128
    total = 30522 * e + 512 * e + 2 * e + 2 * e  # word, position, type embeddings, LayerNorm
    total += (e * h + h) if e != h else 0  # projection E -> H
    for lay in spec["layers"]:
        i = 1024 if compat else lay["feed_forward_dimension"]
        n, heads, op = lay["num_feed_forward"], lay["num_operation_heads"], lay["operation_type"]
        if op == "SA":
            total += 3 * (h * h + h) + (h * h if lay["operation_parameter"] == "WMA" else 0) + (h * h + h) + 2 * h
        elif op == "LT":
            total += h * h + h
        else:
            k, hp = lay["operation_parameter"], heads // 2
            a = hp * (h // heads)
            total += 3 * (h * a + a)  # query, key, value
            total += h * k + h * a + a  # depthwise, pointwise, bias
            total += a * hp * k + hp * k  # kernel generator
            total += h * a + a  # convolution values
            total += (h * h + h) + 2 * h  # dense, LayerNorm
        total += (h * i + i) + (n - 1) * (i * i + i) + (i * h + h) + 2 * h
    return total


def test_num_params_all_architectures_both_modes(space):
    for a in space._archs:
        for compat in (False, True):
            assert space.num_params(a, compat) == _expected_params(a.spec, compat), (a.index, compat)
    # The paper's "Number of Parameters" column (docs/METRICS.md, compat).
    assert [space.num_params(space[i], True) for i in range(5)] == [13330176, 11106199, 8840082, 5526167, 11104143]
    assert NasBenchBERT(paper_compat=True).num_params(space[3]) == 5526167


def test_part_counts_equal_whole_meta_models(space):
    for a in space._archs[::25]:
        for compat in (False, True):
            with torch.device("meta"):
                m = FlexiBertModel(model_config(a.spec, compat))
            assert sum(p.numel() for p in m.parameters()) == count_params(a.spec, compat)


def test_build_seeds_and_covers_every_layer_type(space):
    # ids 0 (SA WMA, LT DCT, SA SDP), 3 (DSC 9/5), 20 (LT DFT, SA WMA) cover every operation.
    kinds = set()
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    for i in (0, 3, 20):
        a = space[i]
        kinds |= {(lay["operation_type"], lay["operation_parameter"]) for lay in a.spec["layers"]}
        m1, m2, m3 = space.build(a, seed=0), space.build(a, seed=0), space.build(a, seed=1)
        assert sum(p.numel() for p in m1.parameters()) == space.num_params(a)
        assert m1.config.hidden_size == a.spec["hidden_size"] and m1.config.use_attention_mask
        w = [p for p in m1.parameters()]
        assert all(torch.equal(p, q) for p, q in zip(w, m2.parameters()))
        assert not all(torch.equal(p, q) for p, q in zip(w, m3.parameters()))
        m1.eval()
        with torch.no_grad():
            out = m1(ids).last_hidden_state
        assert out.shape == (1, 6, a.spec["hidden_size"]) and torch.isfinite(out).all()
    assert kinds == {("SA", "SDP"), ("SA", "WMA"), ("LT", "DFT"), ("LT", "DCT"), ("DSC", 5), ("DSC", 9)}
    c = space.build(space[3], paper_compat=True)
    assert c.config.hidden_size == 256 and not c.config.use_attention_mask
    assert all(lay["feed_forward_dimension"] == 1024 for lay in c.config.layers)
    assert space[3].spec["hidden_size"] == 128  # the stored spec is untouched
