"""The sketch-to-image app: Gradio-free handlers (:mod:`.sketch`) and the Gradio page (:mod:`.page`).

Gradio itself is imported only when a page is built (:func:`require_gradio`), so importing this
package costs no Gradio start-up.
"""

from pirec_lightning.app.page import MAX_UPLOAD, build_app, check_port, launch, require_gradio
from pirec_lightning.app.sketch import (
    SketchHandlers,
    default_example_roots,
    find_examples,
    flatten_canvas,
)

__all__ = [
    "MAX_UPLOAD",
    "SketchHandlers",
    "build_app",
    "check_port",
    "default_example_roots",
    "find_examples",
    "flatten_canvas",
    "launch",
    "require_gradio",
]
