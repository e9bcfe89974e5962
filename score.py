"""Score architectures at initialization: ``python score.py -m 'arch=range(0,4000)'``.

See conf/score.yaml for every option and README.md for sweeps.
"""

import hydra
from omegaconf import DictConfig

import tfnas.hydra_support  # noqa: F401  (registers config resolvers)
from tfnas.tasks.score import score


@hydra.main(config_path="conf", config_name="score", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    return score(cfg)


if __name__ == "__main__":
    main()
