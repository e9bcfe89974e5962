"""analyze.py on LTS GPT-2 records: valid_ppl as the target, the published reference ρ, the design-choice view."""

from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from tfnas import results
from tfnas.spaces.lts_gpt2 import SETS, LtsGpt2Wt103

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_analysis_of_lts_records_reports_references_and_the_space_view(data_dir, tmp_path):
    from hydra import compose, initialize_config_dir

    from tfnas.tasks.analyze import analyze

    space = LtsGpt2Wt103(benchmark=data_dir / "lts" / "saved_logs" / SETS["wt103"])
    res_dir = tmp_path / "results"
    for i in range(40):
        a = space[i]
        counts = space.num_params(a)
        rec = results.Record(space=space.name, arch=i, benchmark_id=a.benchmark_id, seed=0, config_hash=f"h{i:03d}",
                             truth=dict(a.truth), settings={"seed": 0, "batch_index": 0},
                             scores={"num_params_nonembedding": float(counts["nonembedding"]),
                                     "num_params": float(counts["total"])})  # fmt: skip
        results.save(rec, res_dir)
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose("analyze", overrides=[f"results_dir={res_dir}", f"out_dir={tmp_path / 'out'}", "bootstrap=20",
                                            f"paths.data_dir={data_dir}", "search.simulate.enabled=false"])
    out = analyze(cfg)["lts_gpt2_wt103"]
    assert out["targets"] == ["valid_ppl", "test_ppl"]
    corr = pd.read_csv(tmp_path / "out" / "correlations.csv")
    row = corr[(corr.metric == "num_params_nonembedding") & (corr.target == "valid_ppl")].iloc[0]
    ppl = [space[i].truth["valid_ppl"] for i in range(40)]
    nonemb = [space.num_params(space[i])["nonembedding"] for i in range(40)]
    assert row.spearman_rho == pytest.approx(stats.spearmanr(nonemb, [-p for p in ppl]).statistic)  # lower ppl is better
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "LPZero (2024) 0.980" in summary and "non-embedding parameters (LTS, Javaheripi et al. 2022) 0.967" in summary
    assert "Best label-free metric here: `num_params_nonembedding`" in summary
    choices = pd.read_csv(tmp_path / "out" / "space_choices.csv")
    full = choices[(choices.choice == "nonembedding") & (choices.kind == "numeric")].iloc[0]
    assert full.n == 200 and full.spearman_rho == pytest.approx(0.967, abs=5e-4)  # LTS's published ρ
    assert set(choices.choice) >= {"n_layer", "d_model", "mean_heads", "mean_d_inner"}
