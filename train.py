"""Train PI-REC: `python train.py phase=imitation` (see conf/train.yaml for every option)."""

from pirec_lightning.training import main

if __name__ == "__main__":
    main()
