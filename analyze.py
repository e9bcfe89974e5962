"""Analyse result records: correlations, figures, search and search-space views.

    python analyze.py                                   # results/ -> results/analysis/
    python analyze.py results_dir=runs/a out_dir=runs/a/report
    python analyze.py results_dir=results/search search=learned   # the next batch to train

All the work is in :func:`tfnas.tasks.analyze.analyze`; see ``conf/analyze.yaml``.
A missing or empty results folder, or records that cannot be analysed as
asked, end the command with one line on stderr and exit status 1.
"""

import hydra
from omegaconf import DictConfig

from tfnas.analysis.load import InputError
from tfnas.hydra_support import one_line_errors
from tfnas.tasks.analyze import analyze


@hydra.main(config_path="conf", config_name="analyze", version_base="1.3")
@one_line_errors(InputError, FileNotFoundError)
def main(cfg: DictConfig) -> None:
    analyze(cfg)


if __name__ == "__main__":
    main()
