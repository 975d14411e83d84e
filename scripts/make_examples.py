"""Write the bundled model's example pairs (``pretrained/examples``, offered by ``pirec app``):
avatars of the avatars test split (seeds no model here trained on) in colourful line-art styles,
each as its artists' line art (``N_e.png``, white lines on black) and the colour domain the model
makes of the picture (``N_c.png``: median filter and k-means, as in evaluation).

The picks are fixed by ``(style, seed)`` and chosen by looking: styles whose pictures are flat
colours with skin, hair and clothes (``micah``, ``adventurer``, ``open-peeps``), so that no
colour domain is grey or blank (the held-out ``lorelei`` style is black and white: its colour
domains were grey, one all white). ``scripts/make_pretrained.py`` can call
:func:`write_examples`; alone it rewrites the bundled folder and the card's ``examples`` list:

    python scripts/make_examples.py [--name sketch-128]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from torchvision.utils import save_image

from pirec_lightning import pretrained
from pirec_lightning.data import PIRECDataModule
from pirec_lightning.inference import Reconstructor

#: (style, seed) of each example, all in the avatars test split of the bundled model's settings
EXAMPLES = (("micah", 3), ("adventurer", 8), ("open-peeps", 83), ("micah", 6))


def write_examples(
    model: Reconstructor, folder: Path, picks: Sequence[tuple[str, int]] = EXAMPLES
) -> list[str]:
    """The ``picks`` of the avatars test split as PI-REC pairs in ``folder`` (its old PNGs
    removed); returns their names (``<style><seed>``).

    Raises:
        ValueError: a pick is not in the test split, or has no line art.
    """
    settings = {k: v for k, v in model.data_settings.items() if k != "outputs"}
    dataset = PIRECDataModule(**settings).avatar_dataset("test")
    index = {item: i for i, item in enumerate(dataset.items)}
    missing = [f"{style} {seed}" for style, seed in picks if (style, seed) not in index]
    if missing:
        raise ValueError(f"not in the avatars test split: {', '.join(missing)}; pick others")
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    names = []
    for n, (style, seed) in enumerate(picks):
        item = dataset[index[(style, seed)]]
        picture, art = item[:3][None], item[3:][None]
        if not art.max() > 0.5:
            raise ValueError(f"{style} {seed} has no line art; pick a line-art style")
        _, color = model.photo_inputs(picture, seed=n)
        name = f"{style}{seed}"
        save_image((art > 0.5).float(), folder / f"{name}_e.png")
        save_image(color, folder / f"{name}_c.png")
        names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=pretrained.DEFAULT_MODEL)
    args = parser.parse_args(argv)
    model = Reconstructor.pretrained(args.name, device="cpu")
    names = write_examples(model, pretrained.EXAMPLES_DIR)
    card_file = pretrained.model_file(args.name).with_suffix(".json")
    if card_file.is_file():  # only its "examples" list changes
        card = json.loads(card_file.read_text())
        card["examples"] = names
        card_file.write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {len(names)} example pairs to {pretrained.EXAMPLES_DIR}: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
