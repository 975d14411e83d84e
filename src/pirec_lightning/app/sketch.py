"""What the sketch app does, free of Gradio: its actions (:class:`SketchHandlers`), its canvases as
PI-REC inputs, and PI-REC's example pairs.

The edge canvas is drawn as PI-REC's edge files are stored (white lines on black) and the color
domain canvas starts white. A canvas value is what an image editor hands over: a mapping with
``background``, ``layers`` and ``composite`` images (PIL, numpy or file paths), or one image.
These functions only flatten and size the canvases; :class:`~pirec_lightning.inference.Reconstructor`
does the reading (edge polarity, binarization) and the reconstruction.

>>> value = {"background": blank_canvas(8, EDGE_BACKGROUND), "layers": [], "composite": None}
>>> flatten_canvas(value, EDGE_BACKGROUND, 16).shape
(16, 16, 3)
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pirec_lightning.data.folder import load_image
from pirec_lightning.errors import AppError, CheckpointError, ImageTooLarge, one_line
from pirec_lightning.images import DECODE_ERRORS, open_image
from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference.pairs import Pair, find_pairs
from pirec_lightning.preprocess.confusion import ConfusionConfig
from pirec_lightning.pretrained import EXAMPLES_DIR, PREFIX, model_summary

__all__ = [
    "COLOR_BACKGROUND",
    "EDGE_BACKGROUND",
    "LINE_CHOICES",
    "SWATCHES",
    "AppError",
    "Pending",
    "SketchHandlers",
    "blank_canvas",
    "bundled_examples",
    "canvas_value",
    "default_example_roots",
    "examples_label",
    "find_examples",
    "flatten_canvas",
    "to_canvas_image",
]

#: the edge canvas: white lines on black, as PI-REC's ``*_e.png`` files
EDGE_BACKGROUND = (0, 0, 0)
#: the color domain canvas starts white (unpainted areas read as white)
COLOR_BACKGROUND = (255, 255, 255)
#: canvas size without a model (PI-REC's 128 px)
DEFAULT_SIZE = 128
#: the color domain brush's swatches: what a person paints a picture with (skins, hair and
#: wood browns, black, greys, white, sky, grass and water), then the bright ones
SWATCHES = (
    "#fde3cf",  # light skin
    "#f1c6a0",
    "#d9a066",
    "#a86b3c",
    "#6b4226",  # dark skin
    "#8b5a2b",  # brown
    "#4a2c17",  # dark brown
    "#000000",
    "#404040",
    "#808080",
    "#c8c8c8",
    "#ffffff",
    "#8ecae6",  # sky
    "#2f6fb0",  # deep blue
    "#5a9e3a",  # grass
    "#2e5e2a",  # dark green
    "#e53935",  # red
    "#fb8c00",  # orange
    "#fdd835",  # yellow
    "#ec407a",  # pink
    "#8e24aa",  # purple
)
#: the Lines choice: (label, ``edge_style``) where ``canny`` means "the lines as they are" and
#: ``drawn`` "thinned to 1-pixel lines" (:func:`~pirec_lightning.preprocess.drawn.prepare_edges`)
LINE_CHOICES = (("strokes as drawn", "canny"), ("thinned to 1-pixel lines", "drawn"))
#: per canvas (``"edge"``, ``"color"``): the value the page last sent it (``value``) and a digest
#: of the pixels its editor handed over first after that (``held``); see :meth:`SketchHandlers.sent`
Pending = dict[str, dict[str, Any]]
NO_MODEL = (
    "No model loaded: start the app with `pirec app --checkpoint <run>/refinement/checkpoints/"
    "last.ckpt` (or `--pirec-generator G_Model_gen.pth [--pirec-refiner R_Model_gen.pth]`)."
)


def _as_pil(image: Any) -> Image.Image | None:
    if image is None:
        return None
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
        return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    if isinstance(image, str | os.PathLike):
        return open_image(image)
    if isinstance(image, Mapping) and "path" in image:  # a Gradio FileData dict
        return _as_pil(image["path"])
    raise TypeError(f"a canvas image must be a PIL image, an array or a path, got {type(image)}")


def blank_canvas(size: int, color: tuple[int, int, int]) -> np.ndarray:
    """An empty canvas: (size, size, 3) uint8 filled with ``color``."""
    return np.full((size, size, 3), color, dtype=np.uint8)


def flatten_canvas(value: Any, background: tuple[int, int, int], size: int) -> np.ndarray:
    """One canvas value as an opaque (size, size, 3) uint8 RGB image.

    Args:
        value: an editor mapping (``composite`` when present, else ``background`` with
            ``layers`` drawn over it), or a single image (PIL, numpy, path).
        background: RGB shown where the canvas is transparent (unpainted or erased).
        size: the model's image size; a canvas of another size is resized to it (box filter,
            so a thin line stays visible when shrunk).

    Raises:
        ValueError: the canvas is empty (no value at all).
    """
    images: list[Image.Image | None]
    if isinstance(value, Mapping) and "path" not in value:
        composite = _as_pil(value.get("composite"))
        if composite is not None:
            images = [composite]
        else:
            images = [_as_pil(value.get("background"))]
            images += [_as_pil(layer) for layer in value.get("layers") or []]
    else:
        images = [_as_pil(value)]
    images = [image for image in images if image is not None]
    if not images:
        raise ValueError("the canvas is empty: draw on it, load a photo or pick an example")
    canvas = Image.new("RGBA", images[0].size, (*background, 255))
    for image in images:
        layer = image.convert("RGBA")
        if layer.size != canvas.size:
            layer = layer.resize(canvas.size, Image.Resampling.BOX)
        canvas = Image.alpha_composite(canvas, layer)
    flat = canvas.convert("RGB")
    if flat.size != (size, size):
        flat = flat.resize((size, size), Image.Resampling.BOX)
    return np.asarray(flat).copy()


def to_canvas_image(image: torch.Tensor) -> np.ndarray:
    """A model-side map as a canvas image: (1, H, W) edges in {0, 1} become white lines on
    black, (3, H, W) colors in [0, 1] stay RGB. Returns (H, W, 3) uint8."""
    if image.ndim == 4:
        image = image[0]
    array = image.detach().float().cpu().clamp(0, 1).expand(3, -1, -1).permute(1, 2, 0)
    return (array.numpy() * 255).round().astype(np.uint8)


def canvas_value(background: np.ndarray) -> dict[str, Any]:
    """An editor value holding ``background`` and no strokes."""
    return {"background": background, "layers": [], "composite": background}


def find_examples(roots: Iterable[str | Path]) -> list[Pair]:
    """PI-REC's example pairs ``(name, edge file, color file)`` in the first of ``roots`` that
    holds any (:func:`~pirec_lightning.pairs.find_pairs` naming); empty when none does."""

    for root in roots:
        try:
            return find_pairs(root)
        except (FileNotFoundError, ValueError):
            continue
    return []


def bundled_examples() -> list[Pair]:
    """The line-art pairs that ship with the bundled model (``pretrained/examples``, written by
    ``scripts/make_examples.py``: colourful avatars of the test split, seeds no model here
    trains on, their artists' line art and colour domain); empty when the install has none."""
    folder = EXAMPLES_DIR
    return find_pairs(folder) if folder.is_dir() and any(folder.iterdir()) else []


def examples_label(given: int, bundled: int) -> str:
    """The title of the example table: ``given`` pairs of ``--examples`` (or
    ``$PIREC_EXAMPLES_DIR``; PI-REC's own when that folder holds them) come first, then the
    ``bundled`` pairs of the bundled model (:func:`bundled_examples`)."""
    ours = "the bundled model's examples: test-split avatars it never trained on, their line art"
    if given and bundled:
        return f"Examples (edge, color domain): the pairs of --examples, then {ours}"
    if given:
        return "Example pairs of --examples (edge, color domain)"
    return f"{ours[0].upper()}{ours[1:]} (edge, color domain)"


def default_example_roots(examples_dir: str | Path | None = None) -> list[Path]:
    """Where the app looks for PI-REC's example pairs: ``examples_dir`` (``pirec app
    --examples DIR``), then ``$PIREC_EXAMPLES_DIR``. None of them set: no examples."""
    roots: Iterable[Path | None] = (
        Path(examples_dir).expanduser() if examples_dir else None,
        Path(os.environ["PIREC_EXAMPLES_DIR"]).expanduser()
        if os.environ.get("PIREC_EXAMPLES_DIR")
        else None,
    )
    unique: list[Path] = []
    for root in roots:
        if root is not None and root.resolve() not in [r.resolve() for r in unique]:
            unique.append(root)
    return unique


class SketchHandlers:
    """What the app's buttons and sliders do, callable without a browser.

    Args:
        reconstructor: the model, or None (the app opens and says what to pass).
        source: where the model came from, shown in the page.
        summary: what the model is for and not for, shown under its name; None: the card's
            summary when ``source`` names a bundled model (``pretrained:<name>``), else none.
    """

    def __init__(
        self,
        reconstructor: Reconstructor | None = None,
        source: str = "",
        summary: str | None = None,
    ) -> None:
        self.reconstructor = reconstructor
        self.source = source
        self.summary = _bundled_summary(source) if summary is None else summary
        trained = getattr(reconstructor, "image_size", None)
        self.size = int(trained) if trained else DEFAULT_SIZE

    # ------------------------------------------------------------------------- what is shown
    def status(self) -> str:
        """Markdown: the model and its canvas size, then what it is for (:attr:`summary`), or
        what to pass."""
        if self.reconstructor is None:
            return NO_MODEL
        stages = "two stages (Generate, Refine)" if self.stages == 2 else "one stage (Generate)"
        line = f"Model: `{self.source or 'in memory'}`, {stages}, canvas {self.size} px."
        return f"{line}\n\n{self.summary}" if self.summary else line

    @property
    def stages(self) -> int:
        """1 or 2; 0 without a model."""
        return 0 if self.reconstructor is None else int(self.reconstructor.stages)

    @property
    def edge_style(self) -> str:
        """How brush strokes are read by default: ``canny`` (as they are) for a model trained
        with drawn-lines restyling or the artists' line art (``data.confusion.drawn_edges`` or
        ``line_art`` > 0), which reads strokes best as drawn; ``drawn`` (thinned to 1-pixel
        lines) for a model trained on Canny edges alone."""
        confusion = getattr(self.reconstructor, "confusion", None)
        lines = getattr(confusion, "drawn_edges", 0.0) + getattr(confusion, "line_art", 0.0)
        return "canny" if lines > 0 else "drawn"

    def lines_hint(self) -> str:
        """What the Lines choice does, for this model: a line-art model reads strokes as drawn
        (thinning them makes its lines faint); a model trained on Canny edges alone gets them
        thinned to 1-pixel lines, as Canny's."""
        if self.edge_style == "canny":
            return (
                "strokes as drawn: what this model reads (it was trained on line art, lines 1 to "
                "3 pixels wide); thinned: strokes cut to 1-pixel centre lines, for a model "
                "trained on Canny edges alone (this one draws them faint)"
            )
        return (
            "thinned: strokes cut to 1-pixel centre lines, as the Canny edges this model was "
            "trained on; strokes as drawn: the lines as they are (set when edges are "
            "extracted from a photo)"
        )

    def slider_settings(self) -> dict[str, dict[str, float]]:
        """``sigma`` and ``k`` slider ranges and defaults: the model's evaluation values at the
        canvas size (PI-REC's defaults without a model)."""

        confusion = getattr(self.reconstructor, "confusion", None) or ConfusionConfig()
        scale = self.size / confusion.reference_size
        sigma_max = math.ceil(2 * confusion.canny_sigma[1] * scale)
        return {
            "sigma": {
                "minimum": 0.5,
                "maximum": sigma_max,
                "value": confusion.val_canny_sigma * scale,
            },
            "k": {"minimum": 1, "maximum": 8, "value": confusion.val_k},
        }

    def blank_edge(self) -> dict[str, Any]:
        """An empty edge canvas value (black)."""
        return canvas_value(blank_canvas(self.size, EDGE_BACKGROUND))

    def blank_color(self) -> dict[str, Any]:
        """An empty color domain canvas value (white)."""
        return canvas_value(blank_canvas(self.size, COLOR_BACKGROUND))

    # ---------------------------------------------------------------------------- the actions
    def _model(self) -> Reconstructor:
        if self.reconstructor is None:
            raise AppError(NO_MODEL)
        return self.reconstructor

    def _inputs(self, edge: Any, color: Any) -> tuple[Any, Any]:
        if edge is None:
            raise AppError("the edge canvas is empty: draw lines, load a photo or pick an example")
        if color is None:
            raise AppError(
                "the color canvas is empty: paint colors, load a photo or pick an example"
            )
        return (
            flatten_canvas(edge, EDGE_BACKGROUND, self.size),
            flatten_canvas(color, COLOR_BACKGROUND, self.size),
        )

    def generate(self, edge: Any, color: Any, edge_style: str | None = None) -> Image.Image:
        """The first stage's image (PIL, canvas size) from the two canvas values; ``edge_style``
        as :meth:`~pirec_lightning.inference.Reconstructor.reconstruct` (``drawn``: brush
        strokes are thinned to 1-pixel lines first, ``canny``: the lines are used as they are;
        None: :attr:`edge_style`)."""
        model = self._model()
        edge_style = edge_style or self.edge_style
        edge_image, color_image = self._inputs(edge, color)
        return model.reconstruct(
            edge_image, color_image, refine=False, output_type="pil", edge_style=edge_style
        )[0]

    def refine(
        self, edge: Any, color: Any, edge_style: str | None = None
    ) -> tuple[Image.Image, Image.Image]:
        """``(first stage, refined)`` images (PIL, canvas size) from the two canvas values;
        ``edge_style`` as in :meth:`generate`."""
        model = self._model()
        edge_style = edge_style or self.edge_style
        if self.stages < 2:
            raise AppError(
                "this model has no refinement stage: load a refinement checkpoint "
                "(--checkpoint <run>/refinement/checkpoints/last.ckpt) or add --pirec-refiner"
            )
        edge_image, color_image = self._inputs(edge, color)
        final, first = model.reconstruct(
            edge_image,
            color_image,
            refine=True,
            return_preliminary=True,
            output_type="pil",
            edge_style=edge_style,
        )
        return first[0], final[0]

    def extract(
        self, photo: str | Path | Mapping[str, Any] | None, sigma: float, k: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Edge and color domain canvas values of a photo file (a path, or the page's upload: a
        Gradio FileData mapping), center-cropped and resized to the canvas; ``sigma`` (Canny)
        and ``k`` (colors) in canvas pixels.

        Raises:
            AppError: no photo, or a file that is not an image (the message names the file).
        """

        model = self._model()
        path, name = _photo_file(photo)
        try:
            image = load_image(path, self.size)
        except ImageTooLarge as error:
            raise AppError(f"could not read {name!r}: {error}; upload a smaller image") from error
        except DECODE_ERRORS as error:
            reason = (
                "not an image format Pillow reads"
                if isinstance(error, UnidentifiedImageError)
                else one_line(error).replace(path, name)
            )
            raise AppError(
                f"could not read {name!r} as an image: {reason}; upload a PNG, JPEG or WebP"
            ) from error
        edge, color = model.photo_inputs(image, sigma=float(sigma), k=int(k))
        return canvas_value(to_canvas_image(edge)), canvas_value(to_canvas_image(color))

    # ------------------------------------------------------- what the page sent the canvases
    # An image editor shows a value sent to it only once it has loaded it into its canvas,
    # which takes a while (seconds on a slow machine), and until then hands over its old
    # pixels. `pending` remembers the values last sent and what the editors handed over first
    # after that: a canvas still holding those pixels is still loading.
    def _digest(self, value: Any, background: tuple[int, int, int]) -> str | None:
        try:
            pixels = flatten_canvas(value, background, self.size)
        except DECODE_ERRORS:  # an empty canvas (or an unreadable file, from the API)
            return None
        return hashlib.blake2b(pixels.tobytes(), digest_size=16).hexdigest()

    @staticmethod
    def sent(edge: Any, color: Any) -> Pending:
        """A new ``pending``: ``edge`` and ``color`` were just sent to the canvases (an
        example pair's files, or :meth:`extract`'s values)."""
        return {"edge": {"value": edge}, "color": {"value": color}}

    def seen(self, pending: Pending | None, edge: Any, color: Any) -> Pending:
        """``pending`` with what the canvases handed over first after the values were sent
        (``held``: the old pixels while they load, or the loaded values)."""
        pending = {name: dict(entry) for name, entry in (pending or {}).items()}
        for name, value, background in (
            ("edge", edge, EDGE_BACKGROUND),
            ("color", color, COLOR_BACKGROUND),
        ):
            if name in pending and "held" not in pending[name]:
                pending[name]["held"] = self._digest(value, background)
        return pending

    def shown(self, pending: Pending | None, edge: Any, color: Any) -> tuple[Any, Any]:
        """``(edge, color)`` as the page shows them: a canvas that was sent a value and since
        holds nothing new (its editor has not been seen, or still holds the pixels it handed
        over first) reads as that value; any other is taken as it is (the value loaded, maybe
        strokes drawn over it, or cleared)."""
        canvases = {"edge": edge, "color": color}
        for name, background in (("edge", EDGE_BACKGROUND), ("color", COLOR_BACKGROUND)):
            entry = (pending or {}).get(name)
            if entry is not None and (
                "held" not in entry or self._digest(canvases[name], background) == entry["held"]
            ):
                canvases[name] = entry["value"]
        return canvases["edge"], canvases["color"]


def _bundled_summary(source: str) -> str:
    """The card summary of the bundled model ``source`` names (``pretrained:<name>``); empty
    for any other source."""
    if not source.startswith(PREFIX):
        return ""
    try:
        return model_summary(source.removeprefix(PREFIX))
    except CheckpointError:  # not (or no longer) bundled: the page shows the name alone
        return ""


def _photo_file(photo: str | Path | Mapping[str, Any] | None) -> tuple[str, str]:
    """``(path, name to show)`` of a photo: a path, or a Gradio FileData mapping (whose
    ``orig_name`` is the uploaded file's own name)."""
    path, name = (
        (photo.get("path"), photo.get("orig_name")) if isinstance(photo, Mapping) else (photo, None)
    )
    if not path:
        raise AppError("no photo: upload one or pick an example photo")
    return str(path), name or Path(path).name
