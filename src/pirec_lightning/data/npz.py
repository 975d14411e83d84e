"""Images stored in one ``.npz`` array (e.g. a whole icon font), resized like folder images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pirec_lightning.data.folder import square_tensor

__all__ = ["NpzImageDataset"]


class NpzImageDataset(Dataset[torch.Tensor]):
    """The images of an ``.npz`` file as ``(3, S, S)`` float32 tensors in [0, 1].

    The array is ``images`` (or the file's only array): uint8 ``(N, H, W, 3)`` RGB or ``(N, H, W,
    4)`` RGBA (composited onto white), or ``(N, H, W)`` grey. Each image is center-cropped to a
    square and resized to ``image_size`` with Lanczos, as :func:`~pirec_lightning.data.load_image`
    does for files.

    Raises:
        ValueError: no image array in the file, or an unusable shape/dtype.
    """

    def __init__(self, path: str | Path, image_size: int) -> None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"npz file does not exist: {path}")
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            name = "images" if "images" in names else (names[0] if len(names) == 1 else None)
            if name is None:
                raise ValueError(f"{path} has arrays {names}; name the image array 'images'")
            images = data[name]
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) == 0:
            raise ValueError(
                f"{path}:{name} must be uint8 (N, H, W[, C]) images, got {images.dtype} "
                f"{images.shape}"
            )
        self.images = images
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return square_tensor(Image.fromarray(self.images[index]), self.image_size)
