"""Train architectures with the benchmark's protocol: ``python train.py experiment=quick``.

See ``python train.py --help``, conf/train.yaml for every option and README.md for sweeps.
A wrong option value (tfnas/schema.py), an experiment used with another space
or an ``arch`` beyond the space in a single run ends the command with one line
on stderr and exit status 1 (a traceback with ``HYDRA_FULL_ERROR=1``).
"""

import hydra
from omegaconf import DictConfig

from tfnas.hydra_support import command_line, one_line_errors
from tfnas.schema import ConfigError, TrainConfig


@command_line(TrainConfig)
@hydra.main(config_path="conf", config_name="train", version_base="1.3")
@one_line_errors(ConfigError)
def main(cfg: DictConfig) -> dict:
    from tfnas.tasks.train import train  # here, not above: a mistaken command line fails before torch loads

    return train(cfg)


if __name__ == "__main__":
    main()
