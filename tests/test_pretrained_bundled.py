"""The model that ships inside the package: safetensors only, the figures of its card, the app and
the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from safetensors import safe_open
from torch.utils.data import Subset

from pirec_lightning import pretrained
from pirec_lightning.app.sketch import SketchHandlers, bundled_examples
from pirec_lightning.data import PIRECDataModule
from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference.evaluate import evaluate
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.skipif(
    pretrained.DEFAULT_MODEL not in pretrained.list_models(),
    reason=f"this install bundles no {pretrained.DEFAULT_MODEL}",
)


def test_bundled_file_is_fp16_safetensors_within_the_budget():
    path = pretrained.model_file()
    assert path.stat().st_size <= 25_000_000
    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys())
        assert {handle.get_slice(k).get_dtype() for k in keys} == {"F16"}
    card = pretrained.model_card()
    assert card["name"] == pretrained.DEFAULT_MODEL and card["bytes"] == path.stat().st_size


def test_bundled_model_gives_the_figures_of_its_card():
    """The card's check set (a few avatars of a style no training saw, with their line art),
    recomputed from the file: the weights, the rebuilding settings and the evaluation agree."""
    model = Reconstructor.pretrained(device="cpu")
    assert model.stages == 2 and model.image_size == 128
    check = pretrained.model_card()["check"]
    settings = {k: v for k, v in model.data_settings.items() if k != "outputs"}
    dataset = PIRECDataModule(**settings).avatar_dataset(check["split"])
    picked = [i for i, (style, _) in enumerate(dataset.items) if style == check["style"]]
    report, _ = evaluate(
        model,
        Subset(dataset, picked[: check["count"]]),
        16,
        seed=check["seed"],
        edges=check["edges"],
    )
    for name, expected in check["figures"].items():
        stage, metric = name.rsplit("_", 1)
        tolerance = 0.05 if metric == "psnr" else 0.002
        assert report["stages"][stage][metric] == pytest.approx(expected, abs=tolerance), name


def test_app_opens_with_the_bundled_model_and_generates():
    handlers = SketchHandlers(Reconstructor.pretrained(device="cpu"), "pretrained:sketch-128")
    assert handlers.size == 128 and handlers.stages == 2
    assert handlers.edge_style == "canny"  # trained with line art: strokes read as drawn
    examples = bundled_examples()
    assert examples, "the bundled line-art examples are missing"
    _, edge, color = examples[0]
    first, refined = handlers.refine(str(edge), str(color))
    assert first.size == refined.size == (128, 128)


def test_the_wheel_carries_the_weights(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path), str(PROJECT_ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("pirec_lightning-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for suffix in (".safetensors", ".json"):
        assert f"pirec_lightning/pretrained/{pretrained.DEFAULT_MODEL}{suffix}" in names
    assert any(n.startswith("pirec_lightning/pretrained/examples/") for n in names)


def test_unknown_model_is_one_line_naming_the_bundled_ones():
    with pytest.raises(Exception, match=f"bundled: .*{pretrained.DEFAULT_MODEL}") as error:
        Reconstructor.pretrained("sketch-9000")
    assert "\n" not in str(error.value)
