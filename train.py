"""Train PI-REC: `python train.py phase=imitation` (see conf/train.yaml for every option)."""

from pirec_lightning.train import main

if __name__ == "__main__":
    main()
