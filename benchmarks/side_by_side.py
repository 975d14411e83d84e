"""Models side by side on the same items: one grid, the same edge and colour-domain inputs for
every model (made with the first model's evaluation settings), each model's refined output (its
first stage for a generating checkpoint), then the ground truth. Items spread evenly over the
emoji test split and, with ``--noto``, over the Noto emoji, at ``--size`` px.

    python benchmarks/side_by_side.py --out docs/images/loss_arms.png --noto ../shared/data/noto_emoji_128.npz \\
        arm1=runs/arms/arm1_ref/checkpoints/last.ckpt arm2=runs/arms/arm2_ref/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from quality import load_model
from torchvision.utils import make_grid, save_image

from pirec_lightning.inference.evaluate import (
    checkpoint_test_split,
    grid_header,
    image_source,
    spread_indices,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="label=checkpoint or label=pretrained:<name>")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--noto", help="noto_emoji_128.npz: half the items from it")
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    models = {}
    for spec in args.models:
        label, _, path = spec.rpartition("=")
        models[label or path] = load_model(path)
    first = next(iter(models.values()))
    settings = {**dict(first.data_settings), "image_size": args.size}
    emoji, _ = checkpoint_test_split(settings, ["data=emoji"])
    sets = [emoji] + ([image_source(args.noto, args.size)] if args.noto else [])
    per_set = max(1, args.items // len(sets))
    tiles = []
    for images in sets:
        items = [images[i] for i in spread_indices(len(images), per_set)]
        batch = torch.stack([(x["image"] if isinstance(x, dict) else x)[:3] for x in items])
        edge, color = first.photo_inputs(batch, seed=0)
        columns = [edge.expand_as(batch).float(), color.float()]
        for model in models.values():
            final, stage1 = model.reconstruct_tensors(edge, color)
            columns.append((final if model.stages == 2 else stage1).float())
        columns.append(batch)
        tiles.append(torch.stack(columns, 1).flatten(0, 1))
    labels = ["edge", "color domain", *models, "ground truth"]
    grid = make_grid(torch.cat(tiles), nrow=len(labels), padding=2, pad_value=1.0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat([grid_header(labels, args.size, grid.shape[-1]), grid], 1), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
