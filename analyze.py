"""Analyse result records: correlations, figures, search and search-space views.

    python analyze.py                                   # results/ -> results/analysis/
    python analyze.py results_dir=runs/a out_dir=runs/a/report
    python analyze.py results_dir=runs/search search=learned   # the next batch to train

All the work is in :func:`tfnas.tasks.analyze.analyze`; see ``conf/analyze.yaml``.
A wrong option value (tfnas/schema.py), a missing or empty results folder, or
records that cannot be analysed as asked, end the command with one line on
stderr and exit status 1; the first two before anything is written, Hydra's
run folder included (``hydra.callbacks`` in conf/analyze.yaml).
``python analyze.py --help`` lists the options.
"""

import hydra
from omegaconf import DictConfig

from tfnas.analysis.load import InputError
from tfnas.hydra_support import command_line, one_line_errors
from tfnas.schema import AnalyzeConfig, ConfigError


@command_line(AnalyzeConfig)
@hydra.main(config_path="conf", config_name="analyze", version_base="1.3")
@one_line_errors(InputError, FileNotFoundError, ConfigError)
def main(cfg: DictConfig) -> None:
    from tfnas.tasks.analyze import analyze  # here, not above: a mistaken command line fails before the libraries load

    analyze(cfg)


if __name__ == "__main__":
    main()
