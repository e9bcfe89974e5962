"""Search strategies with a budget: the oracle's contract, each strategy on synthetic pools with known answers,
the simulation's statistics, and the replayed search a user runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tfnas.search import features, simulate as sim_mod, strategies
from tfnas.search.oracle import BudgetExhausted, Oracle, Pending, RecordOracle
from tfnas.search.propose import propose, train_command
from tfnas.search.simulate import Spec, simulate, trainings_to_reach

SEQUENTIAL = {"learned": strategies.learned, "ego": strategies.ego}


def _pool(n: int = 120, seed: int = 0, noise: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Quality q and metrics: 'perfect' = q, 'good' = q + noise, 'random' independent, 'bad' = −q."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=n)
    df = pd.DataFrame({"perfect": q, "good": q + noise * rng.normal(size=n), "random": rng.normal(size=n),
                       "bad": -q, "other": q + 2 * noise * rng.normal(size=n)})
    return df, q


# ---------------------------------------------------------------- oracle

def test_oracle_charges_new_positions_once_and_enforces_the_budget():
    q = np.arange(10.0)
    o = Oracle(q, budget=3)
    assert o.train([4, 2]).tolist() == [4.0, 2.0]
    assert o.train([2]).tolist() == [2.0] and o.spent == 2  # asked again: answered, not charged
    with pytest.raises(BudgetExhausted):
        o.train([7, 8])                                      # 2 new, 1 left: nothing revealed
    assert o.spent == 2 and o.remaining == 1
    o.train([9])
    pos, vals = o.known()
    assert pos.tolist() == [4, 2, 9] and vals.tolist() == [4.0, 2.0, 9.0]
    with pytest.raises(IndexError):
        o.train([10])


def test_record_oracle_stops_at_the_first_untrained_batch():
    o = RecordOracle(6, {0: 1.0, 3: np.nan}, budget=5)
    assert o.train([3, 0]).tolist()[1] == 1.0
    with pytest.raises(Pending) as e:
        o.train([1, 0, 5])
    assert e.value.missing == [1, 5] and o.spent == 2


# ---------------------------------------------------------------- features and imputation

def test_undefined_scores_get_the_median_rank_and_an_indicator():
    df = pd.DataFrame({"a": [3.0, np.nan, 1.0, 2.0, np.inf], "b": [1.0, 2.0, 3.0, 4.0, 5.0]})
    x, names = features.rank_features(df, ["a", "-b"])
    assert names == ["a", "-b", "a:missing"]
    # defined a: 3, 1, 2 -> ranks 1, 1/3, 2/3; median 2/3 for the undefined ones
    np.testing.assert_allclose(x[:, 0], [1.0, 2 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(x[:, 1], [1.0, 0.8, 0.6, 0.4, 0.2])
    assert x[:, 2].tolist() == [0, 1, 0, 0, 1]
    avg = features.rank_average(df, ["a", "-b"])
    assert len(avg) == 5 and np.isfinite(avg).all()  # nobody dropped
    with pytest.raises(KeyError, match="unknown metric"):
        features.rank_features(df, ["nope"])


def test_usable_metrics_drop_constant_and_mostly_undefined_columns():
    df = pd.DataFrame({"ok": [1.0, 2, 3, 4], "const": [1.0] * 4, "sparse": [1.0, np.nan, np.nan, np.nan]})
    assert features.usable_metrics(df) == ["ok"]


# ---------------------------------------------------------------- strategies on known answers

@pytest.mark.parametrize("name", ["top_metric", "combination", "learned", "ego"])
def test_a_perfect_metric_reaches_the_oracle_at_budget_one(name):
    df, q = _pool()
    settings = {"top_metric": {"metric": "perfect"}, "combination": {"metrics": ["perfect", "-bad"]},
                "learned": {"warm_metric": "perfect"}, "ego": {"warm_metric": "perfect"}}[name]
    order = strategies.run(name, df, Oracle(q, 1), np.random.default_rng(0), **settings)
    assert order == [int(np.argmax(q))]


def test_a_random_metric_matches_random_search_within_its_band():
    df, q = _pool(n=200, seed=3)
    sim = simulate(df, q, [Spec("random", "random"), Spec("top:random", "top_metric", {"metric": "random"}),
                           Spec("top:good", "top_metric", {"metric": "good"})], repeats=300, seed=1)
    tab = trainings_to_reach(sim, tops=(0.05,))
    rand = tab.set_index("strategy").loc["random"]
    rnd_metric = tab.set_index("strategy").loc["top:random"]
    assert rand.trainings_lo <= rnd_metric.trainings_median <= rand.trainings_hi
    assert abs(rnd_metric.trainings_median - rand.trainings_median) <= 0.35 * rand.trainings_median
    # and a metric with τ ≈ 0.5 does far better than chance
    assert tab.set_index("strategy").loc["top:good"].trainings_median < 0.5 * rand.trainings_median
    # random search: P(no top-5 % in B of n) is hypergeometric; its median is where that crosses 1/2
    n, k = sim.n_pool, sim.threshold(0.05)[1]
    miss = np.cumprod([(n - k - b) / (n - b) for b in range(sim.max_budget)])
    assert abs(rand.trainings_median - (np.argmax(miss <= 0.5) + 1)) <= 2


@pytest.mark.parametrize("name", sorted(SEQUENTIAL))
def test_fitted_strategies_never_see_truth_they_were_not_charged_for(name):
    """Counterfactual: changing the truth of everything the strategy did not train changes nothing it does."""
    df, q = _pool(n=80, seed=5)
    settings = {"warm_metric": "good", "warm": 4, "batch": 3}
    first = Oracle(q, 20)
    order = SEQUENTIAL[name](df, first, np.random.default_rng(7), **settings)
    assert len(order) == 20 == first.spent and len(set(order)) == 20
    untouched = np.setdiff1d(np.arange(len(q)), order)
    q2 = q.copy()
    q2[untouched] = np.random.default_rng(11).normal(size=len(untouched)) * 10
    assert SEQUENTIAL[name](df, Oracle(q2, 20), np.random.default_rng(7), **settings) == order
    # and the learning matters: different truth on what it trained changes the later choices
    q3 = q.copy()
    q3[order[:4]] = q3[order[:4]][::-1] * -5
    assert SEQUENTIAL[name](df, Oracle(q3, 20), np.random.default_rng(7), **settings) != order


@pytest.mark.parametrize("name", ["random", "top_metric", "combination", "learned", "ego"])
def test_strategies_are_anytime_a_smaller_budget_is_a_prefix(name):
    df, q = _pool(n=60, seed=2)
    settings = {"random": {}, "top_metric": {"metric": "good"}, "combination": {"metrics": ["good", "other"]},
                "learned": {"warm_metric": "good", "warm": 3, "batch": 4},
                "ego": {"warm_metric": "good", "warm": 3, "batch": 4}}[name]
    long = strategies.run(name, df, Oracle(q, 15), np.random.default_rng(4), **settings)
    short = strategies.run(name, df, Oracle(q, 9), np.random.default_rng(4), **settings)
    assert short == long[:9]


def test_learned_strategy_keeps_architectures_with_undefined_metrics():
    df, q = _pool(n=50, seed=8)
    df.loc[np.argmax(q), "good"] = np.nan        # the best architecture has an undefined metric
    order = strategies.learned(df, Oracle(q, 50), np.random.default_rng(0), warm_metric="good")
    assert sorted(order) == list(range(50))       # every candidate can still be trained


def test_unknown_strategy_and_metric_fail_with_one_line():
    df, q = _pool(n=10)
    with pytest.raises(ValueError, match="unknown search strategy"):
        strategies.run("nope", df, Oracle(q, 2), np.random.default_rng(0))
    with pytest.raises(KeyError, match="unknown metric"):
        strategies.run("top_metric", df, Oracle(q, 2), np.random.default_rng(0), metric="nope")


# ---------------------------------------------------------------- simulation statistics

def test_simulation_curves_are_monotone_and_the_oracle_has_no_regret():
    df, q = _pool(n=100, seed=9)
    sim = simulate(df, -q, [Spec("random", "random"), Spec("top:good", "top_metric", {"metric": "-good"})],
                   repeats=40, seed=2)
    assert sim.n_pool == 50 and sim.max_budget == 12
    cur = sim_mod.curves(sim, sign=-1)  # target = q ("a loss": lower is better)
    for label, g in cur.groupby("strategy"):
        assert (np.diff(g["best_median"].to_numpy()) <= 1e-12).all(), label   # a loss only goes down
        assert (g["best_lo"] <= g["best_median"]).all() and (g["best_median"] <= g["best_hi"]).all()
    orc = cur[cur["strategy"] == "oracle"]
    assert (orc["regret_median"] == 0).all() and (orc["p_top1"] == 1).all()
    # by hand: the oracle's best is each pool's minimum of q
    assert orc["best_median"].iloc[0] == pytest.approx(np.median(q[sim.pools].min(axis=1)))
    tab = trainings_to_reach(sim)
    assert set(tab["top"]) == {0.05, 0.01} and (tab["random_median"] > 0).all()


def test_first_reach_counts_trainings_and_marks_misses():
    q = np.arange(20.0)
    sim = sim_mod.Simulation(q, np.array([np.arange(20)]), {"s": np.array([[3, 19, 5]])}, [Spec("s", "random")], 0.0)
    assert sim_mod.first_reach(sim, "s", 0.05).tolist() == [2.0]          # top 1 of 20 = arch 19, 2nd training
    sim.trained["s"] = np.array([[3, 4, 5]])
    assert np.isinf(sim_mod.first_reach(sim, "s", 0.05)).all()


# ---------------------------------------------------------------- the user's search

def test_proposals_are_idempotent_and_resume_after_training():
    df, q = _pool(n=40, seed=4)
    df.index = np.arange(100, 140)                   # arch ids are not positions
    quality = dict(zip(df.index, q))
    settings = {"warm_metric": "good", "warm": 3, "batch": 3}
    p0 = propose(df, {}, "learned", settings, budget=9, batch=3)
    assert len(p0.batch) == 3 and p0.spent == 0 and not p0.done
    assert propose(df, {}, "learned", settings, budget=9, batch=3).batch == p0.batch   # idempotent
    trained = {a: quality[a] for a in p0.batch}
    trained[139] = 5.0                               # trained outside the search: reported, not used
    p1 = propose(df, trained, "learned", settings, budget=9, batch=3)
    assert p1.trained == p0.batch and p1.unused == [139] and not set(p1.batch) & set(p0.batch)
    trained.update({a: quality[a] for a in p1.batch[:2]})   # half a batch trained: the rest is proposed
    p2 = propose(df, trained, "learned", settings, budget=9, batch=3)
    assert p2.batch == p1.batch[2:]
    trained.update({a: quality[a] for a in p2.batch})
    p3 = propose(df, trained, "learned", settings, budget=9, batch=3)
    trained.update({a: quality[a] for a in p3.batch})
    done = propose(df, trained, "learned", settings, budget=9, batch=3)
    assert done.done and done.batch == [] and done.spent == 9
    # the replay made the same choices as the simulated search with the same seed
    sim_order = strategies.learned(df.reset_index(drop=True), Oracle(q, 9), np.random.default_rng(0), **settings)
    assert done.trained == [int(df.index[i]) for i in sim_order]
    assert done.best() == max(((a, quality[a]) for a in done.trained), key=lambda aq: aq[1])


def test_top_metric_proposes_its_ranking_batch_by_batch():
    df, _ = _pool(n=30)
    p = propose(df, {}, "top_metric", {"metric": "perfect"}, budget=10, batch=4)
    assert p.batch == df["perfect"].sort_values(ascending=False).index[:4].tolist()
    assert train_command([3, 17], ["space=nasbench_nlp"]) == "python train.py -m 'arch=3,17' space=nasbench_nlp"


# ---------------------------------------------------------------- configs

def test_search_configs_match_the_defaults_and_select_their_strategy():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tfnas.paths import REPO_ROOT
    from tfnas.search.report import DEFAULTS

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        base = OmegaConf.to_container(compose(config_name="analyze").search)
        assert base == DEFAULTS
        for name in strategies.STRATEGIES:
            cfg = compose(config_name="analyze", overrides=[f"search={name}", "search.batch=3"])
            assert cfg.search.strategy == name and cfg.search.batch == 3 and cfg.search.budget == DEFAULTS["budget"]


# ---------------------------------------------------------------- the user's loop through analyze.py

def _candidates(results_dir, n=40, with_benchmark_truth=False, seed=0):
    """Score records of n generated NAS-Bench-NLP cells (a 'good' and a 'noise' metric); the hidden test loss."""
    from tfnas.results import Record, save

    rng = np.random.default_rng(seed)
    loss = 5 + rng.random(n)
    space_cfg = {"benchmark": None, "generate": n, "num_hidden": [1, 2, 3], "generator_seed": 0}
    for i in range(n):
        settings = {"space": "nasbench_nlp", "space_cfg": space_cfg, "arch": i, "seed": 0, "batch_index": 0}
        save(Record(space="nasbench_nlp", arch=i, benchmark_id=None, seed=0, config_hash="s", settings=settings,
                    scores={"good": float(-loss[i] + 0.3 * rng.normal()), "noise": float(rng.normal())},
                    truth={"test_loss": float(loss[i]), "status": "OK"} if with_benchmark_truth else {}),
             results_dir)
    return loss, space_cfg


def _train(results_dir, archs, loss, space_cfg, failed=()):
    from tfnas.results import Record, save

    for a in archs:
        settings = {"space": "nasbench_nlp", "space_cfg": space_cfg, "arch": int(a), "seed": 0, "batch_index": 0}
        truth = ({"test_loss": float("nan"), "status": "loss is nan!"} if a in failed
                 else {"test_loss": float(loss[a]), "status": "OK"})
        save(Record(space="nasbench_nlp", arch=int(a), benchmark_id=None, seed=0, config_hash="t", source="train",
                    settings=settings, scores={}, truth=truth), results_dir)


def _analyze(results_dir, out, *extra):
    from hydra import compose, initialize_config_dir

    from tfnas.paths import REPO_ROOT
    from tfnas.tasks.analyze import analyze

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="analyze", overrides=[
            f"results_dir={results_dir}", f"out_dir={out}", "bootstrap=10", "tensorboard=false",
            "plots.formats=[png]", "learned.enabled=false", "search=learned", "search.metric=good",
            "search.budget=9", "search.batch=3", "search.warm=3", *extra])
    return analyze(cfg)["nasbench_nlp"]["proposal"]


def test_analyze_proposes_batches_resumes_and_is_idempotent(tmp_path, capsys):
    res = tmp_path / "r"
    loss, space_cfg = _candidates(res)
    p0 = _analyze(res, tmp_path / "o")
    assert p0["spent"] == 0 and len(p0["batch"]) == 3
    assert "space.generate=40" in p0["command"] and f"paths.results_dir={res}" in p0["command"]
    printed = capsys.readouterr().out
    assert p0["command"] in printed
    assert _analyze(res, tmp_path / "o")["batch"] == p0["batch"]               # nothing new: same batch
    _train(res, p0["batch"], loss, space_cfg, failed=p0["batch"][:1])          # one training diverged
    p1 = _analyze(res, tmp_path / "o")
    assert p1["trained"] == p0["batch"] and p1["spent"] == 3 and not set(p1["batch"]) & set(p0["batch"])
    assert np.isnan(p1["test_loss"][0]) and p1["best"]["test_loss"] == pytest.approx(min(loss[p0["batch"][1:]]))
    _train(res, p1["batch"], loss, space_cfg)
    p2 = _analyze(res, tmp_path / "o")
    _train(res, p2["batch"], loss, space_cfg)
    done = _analyze(res, tmp_path / "o")
    assert done["done"] and done["spent"] == 9 and done["batch"] == [] and done["command"] is None
    assert json.loads((tmp_path / "o" / "proposal.json").read_text())["done"]


def test_benchmark_truth_is_ignored_until_trained(tmp_path):
    res = tmp_path / "r"
    loss, space_cfg = _candidates(res, with_benchmark_truth=True)
    p = _analyze(res, tmp_path / "o", "search.simulate.enabled=false")
    assert p["spent"] == 0 and len(p["batch"]) == 3                            # score records' truth is not "trained"
    q = _analyze(res, tmp_path / "o", "search.simulate.enabled=false", "search.truth=any")
    assert q["spent"] == 9 and q["done"]                                       # ... unless asked to count it
    assert q["best"]["test_loss"] == pytest.approx(min(loss[q["trained"]]))
