"""The app's actions called directly (no server): SketchHandlers and the page's error handling."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from pirec_lightning.app.page import _in_page, build_app
from pirec_lightning.app.sketch import SketchHandlers, canvas_value
from pirec_lightning.errors import AppError
from tests.app.conftest import SIZE


def pair(examples_dir: Path, stem: str = "1") -> tuple[str, str]:
    return str(examples_dir / "sketch" / f"{stem}_e.png"), str(
        examples_dir / "sketch" / f"{stem}_c.png"
    )


def test_without_a_model_the_page_says_what_to_pass(examples_dir: Path) -> None:
    handlers = SketchHandlers(None)
    assert "--checkpoint" in handlers.status() and "--pirec-generator" in handlers.status()
    assert handlers.size == 128  # PI-REC's canvas
    with pytest.raises(AppError, match="--checkpoint"):
        handlers.generate(*pair(examples_dir))
    assert isinstance(build_app(None, examples=[]), gr.Blocks)


def test_generate_gives_the_first_stage_at_the_canvas_size(
    reconstructor, examples_dir: Path
) -> None:
    handlers = SketchHandlers(reconstructor, "tiny run")
    assert handlers.size == SIZE and "two stages" in handlers.status()
    edge, color = pair(examples_dir)  # 128 px files on a 32 px canvas
    image = handlers.generate(edge, color)
    assert isinstance(image, Image.Image) and image.size == (SIZE, SIZE) and image.mode == "RGB"
    # the same inputs through the Reconstructor itself, resized as the canvas is
    expected = reconstructor.reconstruct(
        Image.open(edge).resize((SIZE, SIZE), Image.Resampling.BOX),
        Image.open(color).resize((SIZE, SIZE), Image.Resampling.BOX),
        refine=False,
        output_type="pil",
        edge_style="drawn",  # the canvas default: brush strokes are thinned
    )[0]
    assert np.abs(np.asarray(image, float) - np.asarray(expected, float)).max() <= 1
    other = handlers.generate(edge, canvas_value(np.zeros((SIZE, SIZE, 3), np.uint8)))
    assert np.asarray(other).tolist() != np.asarray(image).tolist()  # the colors matter


def test_drawn_strokes_are_thinned_canny_lines_are_not(reconstructor) -> None:
    """The Lines choice: ``drawn`` (the default) gives what the model gives for the strokes'
    1-pixel centre lines, ``canny`` uses the strokes as they are."""
    import torch

    from pirec_lightning.preprocess.drawn import thin_edges

    strokes = np.zeros((SIZE, SIZE, 3), np.uint8)
    strokes[8:13, 4:28] = 255  # a 5-pixel brush stroke
    strokes[4:28, 20:24] = 255
    thinned = thin_edges(torch.from_numpy(strokes[..., :1] > 0).float().permute(2, 0, 1)[None])
    thinned = (thinned[0, 0].numpy()[..., None].repeat(3, -1) * 255).astype(np.uint8)
    color = canvas_value(np.full((SIZE, SIZE, 3), (200, 60, 40), np.uint8))
    handlers = SketchHandlers(reconstructor)
    drawn = np.asarray(handlers.generate(canvas_value(strokes), color))
    as_thinned = np.asarray(handlers.generate(canvas_value(thinned), color, "canny"))
    as_is = np.asarray(handlers.generate(canvas_value(strokes), color, "canny"))
    assert drawn.tolist() == as_thinned.tolist()
    assert drawn.tolist() != as_is.tolist()


def test_lines_default_follows_how_the_model_was_trained(reconstructor, monkeypatch) -> None:
    """Thinned strokes for a model trained on Canny alone; strokes as drawn for one trained
    with drawn-lines restyling (data.confusion.drawn_edges > 0)."""
    from dataclasses import replace

    assert SketchHandlers(reconstructor).edge_style == "drawn"
    restyled = replace(reconstructor.confusion, drawn_edges=0.5)
    monkeypatch.setattr(reconstructor, "confusion", restyled)
    assert SketchHandlers(reconstructor).edge_style == "canny"
    assert SketchHandlers(None).edge_style == "drawn"


def test_refine_gives_both_stages(reconstructor, examples_dir: Path) -> None:
    handlers = SketchHandlers(reconstructor)
    first, refined = handlers.refine(*pair(examples_dir, "1"))
    assert first.size == refined.size == (SIZE, SIZE)
    assert np.asarray(first).tolist() == np.asarray(handlers.generate(*pair(examples_dir))).tolist()
    assert np.asarray(refined).tolist() != np.asarray(first).tolist()


def test_refine_without_a_second_stage_says_so(tiny_run, examples_dir: Path) -> None:
    from pirec_lightning.inference import Reconstructor

    one_stage = SketchHandlers(Reconstructor.from_checkpoint(tiny_run["generating"], device="cpu"))
    assert "one stage" in one_stage.status()
    with pytest.raises(AppError, match="no refinement stage"):
        one_stage.refine(*pair(examples_dir))


def test_photo_extraction_follows_the_sliders(reconstructor, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = np.zeros((96, 128, 3), np.uint8)  # not square: center-cropped to the canvas
    photo[:, :64] = (220, 30, 30)
    photo[:, 64:] = (30, 30, 220)
    photo[30:60, 40:90] = (30, 200, 30)
    photo = np.clip(photo + rng.integers(-20, 20, photo.shape), 0, 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    handlers = SketchHandlers(reconstructor)
    defaults = handlers.slider_settings()
    assert defaults["sigma"]["value"] == pytest.approx(4.0 * SIZE / 128)
    assert defaults["k"]["value"] == 4
    edge, color = handlers.extract(str(tmp_path / "photo.png"), defaults["sigma"]["value"], 4)
    edge, color = edge["background"], color["background"]
    assert edge.shape == color.shape == (SIZE, SIZE, 3)
    assert set(np.unique(edge)) == {0, 255} and edge.mean() < 128  # white lines on black
    two = handlers.extract(str(tmp_path / "photo.png"), 1.0, 2)[1]["background"]
    assert (
        len(np.unique(two.reshape(-1, 3), axis=0))
        <= 2
        < len(np.unique(color.reshape(-1, 3), axis=0))
    )
    with pytest.raises(AppError, match="could not read 'bad.png' as an image"):
        (tmp_path / "bad.png").write_bytes(b"not an image")
        handlers.extract(str(tmp_path / "bad.png"), 1.0, 2)


def test_a_photo_that_is_not_an_image_is_named_with_the_fix(reconstructor, tmp_path: Path) -> None:
    handlers = SketchHandlers(reconstructor)
    # the page's upload: a FileData mapping, the file under a cache name, its own name aside
    (tmp_path / "upload.png").write_text("shopping list: eggs, milk\n")
    upload = {"path": str(tmp_path / "upload.png"), "orig_name": "notes.txt"}
    with pytest.raises(AppError) as caught:
        handlers.extract(upload, 1.0, 2)
    assert str(caught.value) == (
        "could not read 'notes.txt' as an image: not an image format Pillow reads; "
        "upload a PNG, JPEG or WebP"
    )
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:-40])
    with pytest.raises(AppError) as caught:
        handlers.extract(str(tmp_path / "cut.png"), 1.0, 2)
    message = str(caught.value)
    assert message.startswith("could not read 'cut.png' as an image: image file is truncated")
    assert message.endswith("; upload a PNG, JPEG or WebP") and str(tmp_path) not in message


def test_a_canvas_still_loading_reads_as_the_value_sent(examples_dir: Path) -> None:
    """The race of Generate just after picking an example: until the editor has loaded the
    pair it hands over its old pixels, which must read as the pair."""
    handlers = SketchHandlers(None)  # 128 px canvases, as the example files
    edge_file, color_file = pair(examples_dir)
    blank_edge, blank_color = handlers.blank_edge(), handlers.blank_color()
    pending = handlers.sent(edge_file, color_file)
    # not seen yet, then seen holding the old pixels: the editors are still loading
    assert handlers.shown(pending, blank_edge, blank_color) == (edge_file, color_file)
    pending = handlers.seen(pending, blank_edge, blank_color)
    assert handlers.shown(pending, blank_edge, blank_color) == (edge_file, color_file)
    assert handlers.seen(pending, edge_file, color_file) == pending  # the first hand-over counts
    # loaded, then a stroke drawn over it, or cleared: the canvas as it is
    stroked = np.asarray(Image.open(edge_file).convert("RGB")).copy()
    stroked[60:64, 10:100] = 255
    stroked = canvas_value(stroked)
    assert handlers.shown(pending, stroked, color_file) == (stroked, color_file)
    cleared = {"background": None, "layers": [], "composite": None}
    assert handlers.shown(pending, cleared, blank_color) == (cleared, color_file)
    assert handlers.shown({}, blank_edge, blank_color) == (blank_edge, blank_color)


def test_the_page_shows_one_line_never_a_traceback(reconstructor, tmp_path: Path) -> None:
    handlers = SketchHandlers(reconstructor)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    shown = _in_page(gr, handlers.generate)
    with pytest.raises(gr.Error) as caught:
        shown(str(tmp_path / "broken.png"), str(tmp_path / "broken.png"))
    message = str(caught.value.message)
    assert message.startswith("generate failed:") and "\n" not in message
    assert "Traceback" not in message
    with pytest.raises(gr.Error, match="edge canvas is empty"):
        shown(None, None)


def test_the_page_and_list_models_say_what_the_bundled_model_is_for() -> None:
    """Issue 27 row 15: the card's summary (for line art and flat colours; not for photos) in
    the page, next to the model's name, and in ``list_models(details=True)``."""
    from pirec_lightning import pretrained
    from pirec_lightning.inference import Reconstructor

    if pretrained.DEFAULT_MODEL not in pretrained.list_models():
        pytest.skip("this install has no bundled model")
    summary = pretrained.model_summary(pretrained.DEFAULT_MODEL)
    assert "line art" in summary and "photos" in summary and "128 px" in summary
    assert pretrained.list_models(details=True) == {pretrained.DEFAULT_MODEL: summary}
    assert pretrained.list_models() == [pretrained.DEFAULT_MODEL]  # names, as before
    model = Reconstructor.pretrained(device="cpu")
    status = SketchHandlers(model, f"{pretrained.PREFIX}{pretrained.DEFAULT_MODEL}").status()
    assert "sketch-128" in status and summary in status
    assert summary not in SketchHandlers(model, "my.ckpt").status()  # not a bundled model
    page = build_app(model, examples=[], source=f"{pretrained.PREFIX}{pretrained.DEFAULT_MODEL}")
    assert summary in str(page.config["components"])


def _component(page: gr.Blocks, elem_id: str) -> dict:
    (props,) = [
        c["props"] for c in page.config["components"] if c["props"].get("elem_id") == elem_id
    ]
    return props


def _hue_family(hex_color: str) -> str:
    import colorsys

    r, g, b = (int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    if s < 0.12:
        return "black" if v < 0.15 else "white" if v > 0.95 else "grey"
    if 0.02 <= h <= 0.12 and v < 0.7:
        return "brown"
    if 0.02 <= h <= 0.12 and s < 0.6:
        return "skin"
    if 0.5 <= h <= 0.6 and s < 0.6:
        return "sky"
    if 0.22 <= h <= 0.4 and v < 0.8:
        return "grass"
    return "bright"


def test_the_color_swatches_are_what_a_person_paints_with(reconstructor) -> None:
    """Issue 27 row 14: skins, browns, black, greys, sky and grass, and the bright ones."""
    from pirec_lightning.app.sketch import SWATCHES

    families = [_hue_family(c) for c in SWATCHES]
    for family in ("skin", "brown", "black", "grey", "white", "sky", "grass", "bright"):
        assert family in families, f"no {family} swatch in {SWATCHES}"
    assert families.count("skin") >= 3 and families.count("bright") >= 4
    brush = _component(build_app(reconstructor, examples=[]), "color-canvas")["brush"]
    assert brush["colors"] == list(SWATCHES)


def test_the_example_table_says_whose_examples_they_are(reconstructor, examples_dir) -> None:
    """The bundled pairs are the bundled model's, not PI-REC's; pairs of --examples come first."""
    from pirec_lightning.app.sketch import bundled_examples, find_examples

    if not bundled_examples():
        pytest.skip("this install has no bundled examples")
    label = _component(build_app(reconstructor, examples=[]), "example-pairs")["label"]
    assert "PI-REC" not in label and "bundled model" in label
    given = find_examples([examples_dir])
    label = _component(build_app(reconstructor, examples=given), "example-pairs")["label"]
    assert "--examples" in label and "bundled model" in label


def test_the_bundled_examples_are_colourful() -> None:
    """No grey or all-white colour domain: each has hue, several colours, and is not blank."""
    from pirec_lightning.app.sketch import bundled_examples

    examples = bundled_examples()
    if not examples:
        pytest.skip("this install has no bundled examples")
    assert len(examples) >= 4
    for name, edge_file, color_file in examples:
        color = np.asarray(Image.open(color_file).convert("RGB"), float) / 255
        chroma = color.max(-1) - color.min(-1)
        assert (chroma > 0.15).mean() > 0.2, f"{name}: a grey colour domain"
        assert len(np.unique(color.reshape(-1, 3), axis=0)) >= 3, f"{name}: too few colours"
        assert (color.min(-1) < 0.9).mean() > 0.2, f"{name}: nearly all white"
        edge = np.asarray(Image.open(edge_file).convert("L"))
        assert 0.01 < (edge > 127).mean() < 0.3, f"{name}: no line art"


def test_the_lines_hint_matches_the_model(reconstructor, monkeypatch) -> None:
    """A line-art model (sketch-128) reads strokes as drawn; thinning is offered for a model
    trained on Canny edges alone, and the hint says which this one is."""
    from dataclasses import replace

    from pirec_lightning.app.sketch import LINE_CHOICES

    assert dict(LINE_CHOICES) and set(dict(LINE_CHOICES).values()) == {"drawn", "canny"}
    canny_model = SketchHandlers(reconstructor)  # the tiny run: Canny edges only
    assert canny_model.edge_style == "drawn" and "Canny" in canny_model.lines_hint()
    restyled = replace(reconstructor.confusion, line_art=0.5)
    monkeypatch.setattr(reconstructor, "confusion", restyled)
    line_art = SketchHandlers(reconstructor)
    hint = line_art.lines_hint()
    assert line_art.edge_style == "canny" and "line art" in hint
    assert "for a model trained on Canny edges" not in hint.split(";")[0]
    radio = _component(build_app(reconstructor, examples=[]), "edge-style")
    assert radio["info"] == hint and radio["value"] == "canny"
    assert [label for label, _ in radio["choices"]] == [label for label, _ in LINE_CHOICES]
