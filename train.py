"""Train architectures with the benchmark's protocol: ``python train.py experiment=quick``.

See conf/train.yaml for every option and README.md for sweeps.
"""

import hydra
from omegaconf import DictConfig

import tfnas.hydra_support  # noqa: F401  (registers config resolvers)
from tfnas.tasks.train import train


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    return train(cfg)


if __name__ == "__main__":
    main()
