"""Analyse result records: correlations, figures, search and search-space views.

    python analyze.py results_dir=results out_dir=analysis_out
    python analyze.py results_dir=results/search search=learned   # the next batch to train

All the work is in :func:`tfnas.tasks.analyze.analyze`; see ``conf/analyze.yaml``.
"""

import hydra
from omegaconf import DictConfig

import tfnas.hydra_support  # noqa: F401  (registers config resolvers)
from tfnas.tasks.analyze import analyze


@hydra.main(config_path="conf", config_name="analyze", version_base="1.3")
def main(cfg: DictConfig) -> None:
    analyze(cfg)


if __name__ == "__main__":
    main()
