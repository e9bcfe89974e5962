"""Score architectures at initialization: ``python score.py -m 'arch=range(0,4000)'``.

See ``python score.py --help``, conf/score.yaml for every option and README.md for sweeps.
A wrong option value (tfnas/schema.py), an ``arch`` beyond the space in a single
run or an unknown metric ends the command with one line on stderr and exit
status 1 (a traceback with ``HYDRA_FULL_ERROR=1``).
"""

import hydra
from omegaconf import DictConfig

from tfnas.hydra_support import command_line, one_line_errors
from tfnas.schema import ConfigError, ScoreConfig


@command_line(ScoreConfig)
@hydra.main(config_path="conf", config_name="score", version_base="1.3")
@one_line_errors(ConfigError)
def main(cfg: DictConfig) -> dict:
    from tfnas.tasks.score import score  # here, not above: a mistaken command line fails before torch loads

    return score(cfg)


if __name__ == "__main__":
    main()
