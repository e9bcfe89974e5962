"""NAS-Bench-NLP recipes, validation, generator and benchmark reader, on the real benchmark files."""

from __future__ import annotations

import collections
import json
import math
import random
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tfnas.spaces.base import Architecture
from tfnas.spaces.nasbench_nlp.benchmark import HANDMADE_RECIPE_IDS, read_benchmark
from tfnas.spaces.nasbench_nlp.generator import RecipeGenerator, check_sanity, generate_recipe
from tfnas.spaces.nasbench_nlp.recipe import (
    ACTIVATIONS,
    OPS,
    CycleError,
    InputCountError,
    InvalidRecipe,
    MissingOutputError,
    Recipe,
    RecipeError,
    UnknownInputError,
    UnknownOpError,
    UnusedNodeWarning,
)
from tfnas.spaces.nasbench_nlp.space import NasBenchNLP

LOG_NAME = re.compile(r"log_stats_model_(\d+)_.+_(\d+)\.json")


@pytest.fixture(scope="module")
def wt2_zip(data_dir: Path) -> Path:
    return data_dir / "nasbench_nlp" / "train_logs_wikitext-2.zip"


@pytest.fixture(scope="module")
def raw_logs(wt2_zip) -> dict[tuple[int, int], dict]:
    """(recipe id, experiment id from the file name) -> the parsed log, read independently of the reader."""
    out = {}
    with zipfile.ZipFile(wt2_zip) as zf:
        for name in zf.namelist():
            m = LOG_NAME.fullmatch(name.rsplit("/", 1)[-1])
            out[(int(m.group(1)), int(m.group(2)))] = json.loads(zf.read(name))
    return out


@pytest.fixture(scope="module")
def wt2(wt2_zip) -> list[Architecture]:
    return read_benchmark(wt2_zip)


# --------------------------------------------------------------------------- reader


def test_reader_reads_all_345_logs_in_sorted_order(wt2, raw_logs):
    assert len(wt2) == 345 == len(raw_logs)
    keys = [(int(a.benchmark_id), a.meta["experiment_id"]) for a in wt2]
    assert keys == sorted(raw_logs)  # by recipe id, then experiment id
    assert [a.index for a in wt2] == list(range(345))


def test_reader_truth_and_meta_match_the_logs(wt2, raw_logs):
    hyper = ("emsize", "nhid", "nlayers", "dropout", "dropouth", "dropouti", "dropoute", "wdrop", "bptt",
             "batch_size", "lr", "wdecay", "epochs", "clip", "alpha", "beta", "num_params")
    for a in wt2:
        log = raw_logs[(int(a.benchmark_id), a.meta["experiment_id"])]
        assert a.truth["status"] == log["status"]
        for k in hyper:
            assert a.meta[k] == log[k], (a.benchmark_id, k)
        assert a.meta["file"].endswith(".json")
        assert a.spec.to_dict() == json.loads(log["recepie"])
        if log["status"] == "OK":
            assert a.truth["test_loss"] == log["test_losses"][-1]
            assert a.truth["val_loss"] == log["val_losses"][-1]
            assert math.isclose(a.truth["test_ppl"], math.exp(log["test_losses"][-1]))
            assert not a.meta["failed"]
    assert wt2[0].meta["emsize"] == 400 and wt2[0].meta["nhid"] == 600 and wt2[0].meta["epochs"] == 50


def test_failed_runs_are_kept_and_flagged(wt2, raw_logs):
    failed = [a for a in wt2 if a.meta["failed"]]
    not_ok = [k for k, log in raw_logs.items() if log["status"] != "OK"]
    assert len(failed) == 4 == len(not_ok)
    assert sorted((int(a.benchmark_id), a.meta["experiment_id"]) for a in failed) == sorted(not_ok)
    for a in failed:
        assert a.truth["status"] == "loss is nan!"
        assert math.isnan(a.truth["test_loss"]) and math.isnan(a.truth["test_ppl"])
    assert all(math.isfinite(a.truth["test_loss"]) for a in wt2 if not a.meta["failed"])


def test_duplicate_recipe_id_kept_with_its_own_experiment(wt2, raw_logs):
    counts = collections.Counter(rid for rid, _ in raw_logs)
    dup_ids = [rid for rid, c in counts.items() if c > 1]
    assert dup_ids == [1002429]
    runs = [a for a in wt2 if a.benchmark_id == "1002429"]
    assert len(runs) == 2
    first, second = runs
    assert second.index == first.index + 1
    assert first.meta["experiment_id"] < second.meta["experiment_id"]
    assert "duplicate_of" not in first.meta and second.meta["duplicate_of"] == first.index
    assert sum("duplicate_of" in a.meta for a in wt2) == 1
    # Their two runs ended with different losses: two samples of one architecture.
    assert first.truth["test_loss"] != second.truth["test_loss"]


def test_identical_recipes_under_different_ids_are_marked(wt2):
    for a in wt2:
        if "same_recipe_as" in a.meta:
            other = wt2[a.meta["same_recipe_as"]]
            assert other.index < a.index and other.spec == a.spec and other.benchmark_id != a.benchmark_id
    by_recipe = collections.Counter(a.spec for a in wt2 if "duplicate_of" not in a.meta)
    assert sum("same_recipe_as" in a.meta for a in wt2) == sum(c - 1 for c in by_recipe.values()) > 0


def test_directory_reads_identically(wt2, wt2_zip, tmp_path):
    with zipfile.ZipFile(wt2_zip) as zf:
        zf.extractall(tmp_path / "deep" / "logs")
    from_dir = read_benchmark(tmp_path)
    _assert_same_entries(wt2, from_dir)


def test_zip_with_subfolder_and_other_files_reads_identically(wt2, wt2_zip, tmp_path):
    nested = tmp_path / "logs.zip"
    with zipfile.ZipFile(wt2_zip) as src, zipfile.ZipFile(nested, "w") as dst:
        names = src.namelist()
        for name in reversed(names):  # a different file order must not change the result
            dst.writestr(f"train_logs_single_run/{name}", src.read(name))
        dst.writestr("train_logs_single_run/README.txt", "not a log")
    _assert_same_entries(wt2, read_benchmark(nested))


def _assert_same_entries(a_list, b_list):
    assert len(a_list) == len(b_list)
    for a, b in zip(a_list, b_list):
        assert (a.index, a.benchmark_id, a.spec) == (b.index, b.benchmark_id, b.spec)
        assert list(a.spec.nodes) == list(b.spec.nodes)
        for k in a.truth:
            va, vb = a.truth[k], b.truth[k]
            assert va == vb or (isinstance(va, float) and math.isnan(va) and math.isnan(vb))
        assert {k: v for k, v in a.meta.items() if k != "file"} == {k: v for k, v in b.meta.items() if k != "file"}


def test_recipe_list(data_dir):
    archs = read_benchmark(data_dir / "nasbench_nlp" / "recepies_example.json")
    raw = json.loads((data_dir / "nasbench_nlp" / "recepies_example.json").read_text())
    assert len(archs) == 10
    assert [a.spec.to_dict() for a in archs] == raw
    assert all(a.benchmark_id is None and a.truth == {} for a in archs)
    assert [a.meta["position"] for a in archs] == list(range(10))
    rnn, lstm, gru = (a.spec for a in archs[:3])
    assert (rnn.num_hidden, lstm.num_hidden, gru.num_hidden) == (1, 2, 1)
    assert len(lstm) == 13 and "h_new_1_part1" in lstm.nodes  # not an output despite its name
    # The benchmark's GRU feeds h_prev_0 straight into h_new_0: valid, but not a generator cell.
    with pytest.raises(RecipeError, match="h_new_0"):
        check_sanity(gru)
    for a in archs[3:]:
        check_sanity(a.spec)


def test_all_log_recipes_are_valid_and_random_ones_pass_sanity(wt2):
    for a in wt2:
        assert isinstance(a.spec, Recipe) and not a.spec.unused
        assert Recipe(a.spec.to_dict()) == a.spec
        if a.benchmark_id not in HANDMADE_RECIPE_IDS:
            check_sanity(a.spec)
            assert all(re.fullmatch(r"node_\d+|h_new_\d+", n) for n in a.spec.nodes)


def test_random_cell_op_counts_of_spaces_md(wt2):
    # docs/SPACES.md §1: after pruning, the WikiText-2 random cells hold linear 1175 : blend 38 : prod 56 : sum 94,
    # and 159, 140, 43 cells of T = 1, 2, 3.
    random_cells = [a.spec for a in wt2 if a.benchmark_id not in HANDMADE_RECIPE_IDS]
    counts = collections.Counter()
    for r in random_cells:
        counts.update(r.op_counts())
    assert (counts["linear"], counts["blend"], counts["elementwise_prod"], counts["elementwise_sum"]) == (
        1175, 38, 56, 94)
    assert collections.Counter(r.num_hidden for r in random_cells) == {1: 159, 2: 140, 3: 43}


def test_malformed_log_names_the_file(tmp_path):
    bad = tmp_path / "log_stats_model_1000000_2020-01-01_00-00-00_1.json"
    bad.write_text('{"recepie_id": 1000000, "recepie": ')  # truncated
    with pytest.raises(ValueError, match=re.escape(bad.name)):
        read_benchmark(tmp_path)
    bad.write_text(json.dumps({"recepie_id": 1000000, "recepie": "{}", "status": "OK"}))
    with pytest.raises(ValueError, match=re.escape(bad.name) + ".*test_losses"):
        read_benchmark(tmp_path)
    broken_recipe = {"recepie_id": 1000000, "status": "OK", "test_losses": [5.0], "val_losses": [5.1],
                     "recepie": json.dumps({"h_new_0": {"op": "activation_tanh", "input": ["nope"]}})}
    bad.write_text(json.dumps(broken_recipe))
    # An invalid recipe is one bad architecture, not a bad file: it is kept, and building it raises.
    (entry,) = read_benchmark(tmp_path)
    assert isinstance(entry.spec, InvalidRecipe) and "nope" in entry.spec.error and bad.name in entry.spec.error
    with pytest.raises(RecipeError, match=re.escape(bad.name) + ".*nope"):
        NasBenchNLP(tmp_path).build(entry)
    archive = tmp_path / "logs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("logs/log_stats_model_1000001_2020-01-01_00-00-00_2.json", "not json")
    with pytest.raises(ValueError, match="log_stats_model_1000001_2020-01-01_00-00-00_2.json"):
        read_benchmark(archive)


def test_reader_errors_for_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_benchmark(tmp_path / "nowhere.zip")
    with pytest.raises(ValueError, match="no log_stats_model"):
        read_benchmark(tmp_path)


def test_reader_returns_copies(wt2_zip):
    a = read_benchmark(wt2_zip)
    a[0].meta["emsize"] = -1
    a[0].truth["test_loss"] = -1.0
    b = read_benchmark(wt2_zip)
    assert b[0].meta["emsize"] == 400 and b[0].truth["test_loss"] > 0


# --------------------------------------------------------------------------- recipe validation


def _err(recipe, exc):
    with pytest.raises(exc) as e:
        Recipe(recipe)
    assert isinstance(e.value, RecipeError) and isinstance(e.value, ValueError)
    return e.value


def test_unknown_op():
    e = _err({"a": {"op": "conv", "input": ["x"]}, "h_new_0": {"op": "activation_tanh", "input": ["a"]}},
             UnknownOpError)
    assert e.node == "a" and "'a'" in str(e) and "conv" in str(e)


@pytest.mark.parametrize(
    "op, inputs",
    [("blend", ["x", "h_prev_0"]), ("activation_sigm", ["x", "h_prev_0"]), ("linear", []),
     ("elementwise_sum", ["x"]), ("elementwise_prod", ["x"]), ("blend", ["x", "x", "h_prev_0", "x"])],
)
def test_wrong_number_of_inputs(op, inputs):
    e = _err({"n1": {"op": op, "input": inputs}, "h_new_0": {"op": "linear", "input": ["n1"]}}, InputCountError)
    assert e.node == "n1" and "'n1'" in str(e) and str(len(inputs)) in str(e)


@pytest.mark.parametrize("bad", ["h_prev_1", "foo", "h_new_3"])
def test_unknown_input(bad):
    e = _err({"a": {"op": "linear", "input": ["x", bad]}, "h_new_0": {"op": "activation_tanh", "input": ["a"]}},
             UnknownInputError)
    assert e.node == "a" and e.input == bad and "'a'" in str(e) and bad in str(e)


def test_cycle():
    e = _err(
        {
            "a": {"op": "linear", "input": ["x", "c"]},
            "b": {"op": "activation_tanh", "input": ["a"]},
            "c": {"op": "elementwise_sum", "input": ["b", "h_prev_0"]},
            "h_new_0": {"op": "activation_sigm", "input": ["b"]},
        },
        CycleError,
    )
    assert e.node in {"a", "b", "c"} and f"'{e.node}'" in str(e)
    assert set(e.cycle) == {"a", "b", "c"} and e.cycle[0] == e.cycle[-1]
    e = _err({"h_new_0": {"op": "elementwise_sum", "input": ["h_new_0", "x"]}}, CycleError)
    assert e.node == "h_new_0"


def test_missing_output():
    e = _err({"a": {"op": "linear", "input": ["x", "h_prev_0"]}, "h_new_1": {"op": "activation_tanh", "input": ["a"]}},
             MissingOutputError)
    assert e.node == "h_new_0" and "h_new_0" in str(e)
    e = _err({"a": {"op": "linear", "input": ["x"]}}, MissingOutputError)
    assert e.node == "h_new_0"


@pytest.mark.parametrize(
    "recipe, node",
    [
        ([("h_new_0", {"op": "linear", "input": ["x"]})], None),
        ({"h_new_0": {"input": ["x"]}}, "h_new_0"),
        ({"h_new_0": {"op": "linear"}}, "h_new_0"),
        ({"h_new_0": {"op": "linear", "input": "x"}}, "h_new_0"),
        ({"h_new_0": {"op": "linear", "input": ["x"], "bias": False}}, "h_new_0"),
        ({"x": {"op": "linear", "input": ["h_prev_0"]}, "h_new_0": {"op": "linear", "input": ["x"]}}, "x"),
    ],
)
def test_malformed_structure(recipe, node):
    e = _err(recipe, RecipeError)
    assert e.node == node
    if node:
        assert f"'{node}'" in str(e)


def test_unused_nodes_allowed_reported_and_warned():
    spec = {
        "a": {"op": "linear", "input": ["x", "h_prev_0"]},
        "z": {"op": "activation_tanh", "input": ["a"]},
        "h_new_0": {"op": "activation_sigm", "input": ["a"]},
    }
    with pytest.warns(UnusedNodeWarning, match=r"\bz\b") as rec:
        r = Recipe(spec)
    assert len([w for w in rec if issubclass(w.category, UnusedNodeWarning)]) == 1
    assert r.unused == ("z",)
    assert r.order == ("a", "z", "h_new_0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Recipe({k: v for k, v in spec.items() if k != "z"}).unused == ()


def test_order_is_topological_and_stable():
    # File order is not an evaluation order here: h_new_0 uses h_new_1, which comes later.
    spec = {
        "b": {"op": "linear", "input": ["x", "h_prev_1"]},
        "a": {"op": "linear", "input": ["x", "h_prev_0"]},
        "h_new_0": {"op": "elementwise_sum", "input": ["h_new_1", "a"]},
        "h_new_1": {"op": "activation_tanh", "input": ["b"]},
    }
    r = Recipe(spec)
    assert r.num_hidden == 2
    assert r.order == ("b", "a", "h_new_1", "h_new_0")
    assert list(r.nodes) == list(spec)  # file order kept
    assert r.to_dict() == spec and list(r.to_dict()) == list(spec)


def test_order_of_all_log_recipes_is_topological(wt2):
    for a in wt2:
        r = a.spec
        seen = set(r.graph_inputs)
        assert sorted(r.order) == sorted(r.nodes)
        for name in r.order:
            assert all(i in seen for i in r.nodes[name].inputs)
            seen.add(name)


def test_recipe_value_semantics():
    spec = {"f": {"op": "linear", "input": ["x", "h_prev_0"]}, "h_new_0": {"op": "activation_tanh", "input": ["f"]}}
    r = Recipe(spec)
    assert r == Recipe(json.loads(json.dumps(spec))) == Recipe.from_json(json.dumps(spec))
    assert hash(r) == hash(Recipe(spec)) and len({r, Recipe(spec)}) == 1
    swapped = {"f": {"op": "linear", "input": ["h_prev_0", "x"]}, "h_new_0": spec["h_new_0"]}
    assert Recipe(swapped) != r  # input order changes the weights' order
    assert r.to_json() == json.dumps(spec)
    assert r.nodes["f"].inputs == ("x", "h_prev_0") and r.nodes["f"].op == "linear"
    with pytest.raises(TypeError):
        r.nodes["g"] = r.nodes["f"]  # read-only
    text = repr(r)
    assert text.startswith("Recipe(T=1") and "activation_tanh(f)" in text and len(text) < 250
    with pytest.raises(RecipeError, match="JSON"):
        Recipe.from_json("{not json")


def test_check_sanity_rules():
    ok = {"a": {"op": "linear", "input": ["x", "h_prev_0"]}, "h_new_0": {"op": "activation_tanh", "input": ["a"]}}
    check_sanity(Recipe(ok))
    no_x = {"a": {"op": "linear", "input": ["h_prev_0"]}, "h_new_0": {"op": "activation_tanh", "input": ["a"]}}
    with pytest.raises(RecipeError) as e:
        check_sanity(Recipe(no_x))
    assert e.value.node == "x"
    direct = {"a": {"op": "linear", "input": ["x"]}, "h_new_0": {"op": "elementwise_sum", "input": ["a", "h_prev_0"]}}
    with pytest.raises(RecipeError) as e:
        check_sanity(Recipe(direct))
    assert e.value.node == "h_new_0"
    unused_prev = {"a": {"op": "linear", "input": ["x", "h_prev_0"]},
                   "h_new_0": {"op": "activation_tanh", "input": ["a"]},
                   "h_new_1": {"op": "activation_sigm", "input": ["a"]}}
    with pytest.raises(RecipeError) as e:
        check_sanity(Recipe(unused_prev))
    assert e.value.node == "h_prev_1"


# --------------------------------------------------------------------------- generator


@pytest.fixture(scope="module")
def generated() -> dict[int, list[Recipe]]:
    return {t: RecipeGenerator(t, seed=12345).take(2000) for t in (1, 2, 3)}


def test_generated_cells_are_valid_and_sane(generated):
    for t, cells in generated.items():
        for r in cells[:500]:
            assert r.num_hidden == t and not r.unused
            check_sanity(r)
            assert set(r.op_counts()) <= set(OPS)
            assert Recipe(r.to_dict()) == r
            for n in r.nodes.values():
                ins = [r.nodes.get(i) for i in n.inputs]
                if n.op == "linear":  # step 2: 2-3 distinct inputs among x, h_prev_k and activation nodes
                    assert len(n.inputs) in (2, 3) and len(set(n.inputs)) == len(n.inputs)
                    assert all(i is None or i.op in ACTIVATIONS for i in ins)
                elif n.op in ACTIVATIONS:  # ... each activation sits on its linear node
                    assert ins[0] is not None and ins[0].op == "linear"
                else:  # step 3: blend 3, element-wise 2 distinct inputs, never x
                    assert len(n.inputs) == (3 if n.op == "blend" else 2) == len(set(n.inputs))
                    assert "x" not in n.inputs


def test_generator_is_reproducible():
    a, b, c = RecipeGenerator(seed=7), RecipeGenerator(seed=7), RecipeGenerator(seed=8)
    first = a.take(30)
    assert first == b.take(30)
    assert a[17] == first[17]  # indexing does not depend on what was drawn before
    assert sum(x != y for x, y in zip(first, c.take(30))) >= 25
    assert [r.num_hidden for r in first[:6]] == [1, 2, 3, 1, 2, 3]
    assert generate_recipe(2, 99) == generate_recipe(2, random.Random(99))
    assert generate_recipe(2, 99) != generate_recipe(2, 100)
    with pytest.raises(ValueError):
        generate_recipe(0, 1)
    with pytest.raises(TypeError):
        generate_recipe(1, "seed")


# (T, NumPy seed, benchmark recipe id): cells the benchmark drew with np.random.seed(seed), found by search.
BENCHMARK_DRAWS = [(1, 70, "1000050"), (1, 1365, "1004930"), (2, 176, "1008045"), (2, 582, "1006147"),
                   (3, 296, "1012752"), (3, 2833, "1012925")]


@pytest.mark.parametrize("t, seed, rid", BENCHMARK_DRAWS)
def test_generator_reproduces_benchmark_cells(wt2, t, seed, rid):
    target = next(a.spec for a in wt2 if a.benchmark_id == rid)
    assert len(target) >= 10
    assert generate_recipe(t, np.random.RandomState(seed)) == target
    # The slot count matters: the procedure as docs/SPACES.md words it (T + 7 slots) does not give the cell.
    assert generate_recipe(t, np.random.RandomState(seed), intermediate_vertices=7) != target


def _chi2_two_sample(a: list[int], b: list[int], min_expected: float = 5.0) -> float:
    """p-value of a chi-square test that two samples of small integers share one distribution.

    Adjacent values are pooled until every bin expects at least ``min_expected`` counts of the smaller sample.
    """
    ca, cb = collections.Counter(a), collections.Counter(b)
    share = len(a) / (len(a) + len(b))
    bins, cur = [], [0, 0]
    for v in sorted(set(a) | set(b)):
        cur = [cur[0] + ca[v], cur[1] + cb[v]]
        if (cur[0] + cur[1]) * share >= min_expected:
            bins.append(cur)
            cur = [0, 0]
    if bins:
        bins[-1] = [bins[-1][0] + cur[0], bins[-1][1] + cur[1]]
    if len(bins) < 2:
        return 1.0
    return float(stats.chi2_contingency(np.array(bins).T)[1])


FEATURES = {
    "size": lambda r: len(r),
    "linear": lambda r: r.op_counts()["linear"],
    "activation": lambda r: sum(r.op_counts()[o] for o in ACTIVATIONS),
    "blend": lambda r: r.op_counts()["blend"],
    "elementwise_prod": lambda r: r.op_counts()["elementwise_prod"],
    "elementwise_sum": lambda r: r.op_counts()["elementwise_sum"],
}


def _p_values(wt2, generated, t):
    logged = [a.spec for a in wt2 if a.benchmark_id not in HANDMADE_RECIPE_IDS and a.spec.num_hidden == t]
    assert len(logged) == {1: 159, 2: 140, 3: 43}[t]
    return {k: _chi2_two_sample([f(r) for r in logged], [f(r) for r in generated[t]]) for k, f in FEATURES.items()}


@pytest.mark.parametrize(
    "t",
    [
        pytest.param(
            1,
            marks=pytest.mark.xfail(
                strict=True,
                reason="the WikiText-2 logs' T=1 cells are a selected subset: ~4x fewer blend/prod nodes and "
                "non-uniform activations, while the generator reproduces the benchmark's cells exactly "
                "(see test_generator_reproduces_benchmark_cells and the module docstring)",
            ),
        ),
        2,
        3,
    ],
)
def test_generated_statistics_match_logged_random_cells(wt2, generated, t):
    p = _p_values(wt2, generated, t)
    assert all(v > 1e-3 for v in p.values()), p


def test_t1_mismatch_is_in_blend_and_prod(wt2, generated):
    # What makes the T=1 comparison fail: the logged cells have far fewer blend and prod nodes.
    logged = [a.spec for a in wt2 if a.benchmark_id not in HANDMADE_RECIPE_IDS and a.spec.num_hidden == 1]
    for op in ("blend", "elementwise_prod"):
        per_cell_logged = np.mean([r.op_counts()[op] for r in logged])
        per_cell_generated = np.mean([r.op_counts()[op] for r in generated[1]])
        assert per_cell_logged < 0.5 * per_cell_generated
    assert _p_values(wt2, generated, 1)["elementwise_sum"] > 1e-3


# --------------------------------------------------------------------------- space object


def test_space_over_benchmark(wt2_zip, wt2):
    space = NasBenchNLP(benchmark=str(wt2_zip))
    assert space.name == "nasbench_nlp" and space.metric_space == "rnn"
    assert len(space) == 345
    a = space[3]
    assert (a.index, a.benchmark_id, a.spec) == (3, wt2[3].benchmark_id, wt2[3].spec)
    with pytest.raises(IndexError, match="345"):
        space[345]
    space[0].meta["emsize"] = 0
    assert space[0].meta["emsize"] == 400
    assert len(NasBenchNLP()) == 345  # the data folder's WikiText-2 logs by default


def test_space_of_generated_cells(wt2_zip):
    space = NasBenchNLP(benchmark=None, generate=6, generator_seed=3)
    assert len(space) == 6
    gen = RecipeGenerator((1, 2, 3), seed=3)
    for i in range(6):
        a = space[i]
        assert a.benchmark_id is None and a.truth == {} and a.index == i
        assert a.spec == gen[i] and a.meta["name"] == f"gen-3-{i}"
    assert [space[i].spec for i in range(6)] == [NasBenchNLP(generate=6, generator_seed=3)[i].spec for i in range(6)]
    assert space[0].spec != NasBenchNLP(generate=6, generator_seed=4)[0].spec
    with pytest.raises(IndexError, match="6 architectures"):
        space[6]
    mixed = NasBenchNLP(benchmark=str(wt2_zip), generate=2, generator_seed=3)
    assert len(mixed) == 347 and mixed[345].spec == gen[0] and mixed[345].index == 345
    with pytest.raises(ValueError):
        NasBenchNLP(generate=-1)


def test_missing_benchmark_file_names_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not found: .*nope\.zip; set paths\.data_dir"):
        read_benchmark(tmp_path / "nope.zip")
    with pytest.raises(FileNotFoundError, match=r"not found: nope\.zip \(looked in /.* and /.*\)"):
        read_benchmark("nope.zip")
