"""Scanning an image folder once, before training: what is usable, what is not and why.

:func:`scan_images` walks the folder (following symlinked folders, refusing loops), reads only each
file's header (and its last bytes, where a truncated file shows), in parallel threads, and caches
the result per file by path, size and mtime so a second run over 100k files only ``stat``s them.
Bad files are skipped and counted, not fatal; :func:`usable_images` turns "nothing usable" into one
:class:`~pirec_lightning.errors.DataError`, and "some skipped" into one warning naming a few.

>>> report = scan_images("path/to/photos", max_pixels=100_000_000)  # doctest: +SKIP
>>> len(report.usable), report.skipped[:1]  # doctest: +SKIP
(1203, [(PosixPath('path/to/photos/broken.jpg'), 'truncated (no JPEG end marker)')])
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pirec_lightning.errors import DataError
from pirec_lightning.images import DECODE_ERRORS

__all__ = [
    "DECODE_ERRORS",
    "IMAGE_EXTENSIONS",
    "CorruptImageWarning",
    "ScanReport",
    "scan_cache_dir",
    "scan_images",
    "usable_images",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""File extensions an image folder is searched for, compared case-insensitively."""


_CACHE_VERSION = 1
_TAIL_BYTES = 4096


class CorruptImageWarning(UserWarning):
    """Image files were skipped because they could not be decoded."""


@dataclass
class ScanReport:
    """What :func:`scan_images` found under ``root``.

    Attributes:
        root: the scanned folder.
        usable: decodable image files, sorted by path relative to ``root``.
        skipped: ``(path, reason)`` of every file with an image extension that is not usable,
            and of folders that could not be entered (symlink loops, permissions).
        small: how many usable images are smaller than the requested ``min_side`` (upscaled).
        from_cache: how many files' results came from the cache.
    """

    root: Path
    usable: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    small: int = 0
    from_cache: int = 0

    @property
    def found(self) -> int:
        """Files with an image extension (usable + skipped files, folders not counted)."""
        return len(self.usable) + sum(1 for p, _ in self.skipped if p.suffix.lower() in _EXTS)

    def examples(self, count: int = 3) -> str:
        """A few skipped files and their reasons, for a one-line message."""
        shown = [f"{_relative(p, self.root)} ({why})" for p, why in self.skipped[:count]]
        more = len(self.skipped) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


_EXTS = frozenset(IMAGE_EXTENSIONS)


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def scan_cache_dir() -> Path:
    """Where scan results are cached: ``$PIREC_CACHE_DIR``, else ``$XDG_CACHE_HOME`` or
    ``~/.cache``, under ``pirec-lightning/scans``."""
    if os.environ.get("PIREC_CACHE_DIR"):
        return Path(os.environ["PIREC_CACHE_DIR"]).expanduser() / "scans"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "pirec-lightning" / "scans"


def _walk(root: Path) -> tuple[list[tuple[Path, os.stat_result]], list[tuple[Path, str]]]:
    """Image files under ``root`` (hidden names skipped) with their ``stat``, and the folders
    or links that could not be followed. Symlinked folders are followed once; a link back into
    a folder already on the way is a loop and is reported, not followed."""
    files: list[tuple[Path, os.stat_result]] = []
    problems: list[tuple[Path, str]] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
        except OSError as error:  # e.g. ELOOP for a link to itself
            problems.append((folder, f"cannot enter folder: {error.strerror or error}"))
            continue
        if (info.st_dev, info.st_ino) in seen:
            problems.append((folder, "symlink loop (folder already scanned)"))
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = list(os.scandir(folder))
        except OSError as error:
            problems.append((folder, f"cannot list folder: {error.strerror or error}"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=True):
                    stack.append(path)
                    continue
                if os.path.splitext(entry.name)[1].lower() not in _EXTS:
                    continue
                files.append((path, entry.stat(follow_symlinks=True)))
            except OSError as error:  # dangling link, link loop, permissions
                if os.path.splitext(entry.name)[1].lower() in _EXTS or entry.is_symlink():
                    problems.append((path, f"unreadable: {error.strerror or error}"))
    return files, problems


def _tail_problem(path: Path, image_format: str | None, size: int) -> str | None:
    """A truncation visible at the end of the file, for formats that end with a marker or
    declare their length; None when the file looks complete."""
    with open(path, "rb") as file:
        head = file.read(16)
        file.seek(max(0, size - _TAIL_BYTES))
        tail = file.read()
    if image_format == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated (no JPEG end marker)"
    if image_format == "PNG" and b"IEND" not in tail:
        return "truncated (no PNG end chunk)"
    if image_format == "WEBP" and len(head) >= 8:
        declared = struct.unpack("<I", head[4:8])[0] + 8
        if declared > size:
            return f"truncated ({size} of {declared} bytes)"
    if image_format == "BMP" and len(head) >= 6:
        declared = struct.unpack("<I", head[2:6])[0]
        if declared > size:
            return f"truncated ({size} of {declared} bytes)"
    return None


def _check_file(path: Path, size: int) -> tuple[int, int, str | None]:
    """``(width, height, problem)`` from the header and the tail; never decodes pixels."""
    if size == 0:
        return 0, 0, "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height, image_format = image.width, image.height, image.format
    except Image.DecompressionBombError as error:
        return 0, 0, f"over Pillow's decompression-bomb limit: {str(error).split(',')[0]}"
    except DECODE_ERRORS as error:
        name = type(error).__name__
        if name == "UnidentifiedImageError":
            return 0, 0, "not an image Pillow can read"
        return 0, 0, f"unreadable header: {name}: {error}"
    try:
        return width, height, _tail_problem(path, image_format, size)
    except OSError as error:
        return width, height, f"unreadable: {error}"


def _cache_file(root: Path) -> Path:
    digest = hashlib.sha1(str(root.resolve()).encode("utf-8", "surrogatepass")).hexdigest()
    return scan_cache_dir() / f"{digest[:20]}.json"


def _read_cache(path: Path, root: Path) -> dict[str, list]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("version") != _CACHE_VERSION or data.get("root") != str(root.resolve()):
        return {}
    return data.get("files", {})


def _write_cache(path: Path, root: Path, files: dict[str, list]) -> None:
    """Write atomically; a cache that cannot be written only costs the next run a rescan."""
    payload = {"version": _CACHE_VERSION, "root": str(root.resolve()), "files": files}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        temporary.write_text(json.dumps(payload, ensure_ascii=True))
        os.replace(temporary, path)
    except OSError as error:
        log.debug("cannot write the scan cache %s: %s", path, error)


def scan_images(
    root: str | Path,
    max_pixels: int | None = None,
    min_side: int = 0,
    workers: int | None = None,
    use_cache: bool = True,
) -> ScanReport:
    """Find the usable images under ``root`` without decoding their pixels.

    A file is skipped when it is empty, not an image, has a broken header, is visibly truncated
    (no JPEG/PNG end marker, a WebP/BMP shorter than its header says) or has more than
    ``max_pixels`` pixels. Folders that cannot be entered (symlink loops, permissions) are
    reported too. Truncation in the middle of a file is only found when it is decoded; the
    dataset then replaces it (see `FolderImageDataset`).

    Args:
        root: a folder, searched recursively; names starting with ``.`` are ignored.
        max_pixels: refuse images with more pixels than this (None: no limit of ours).
        min_side: count usable images whose shorter side is below this (they get upscaled).
        workers: threads reading headers (default: up to 8).
        use_cache: read and update the per-file cache in :func:`scan_cache_dir`.

    Returns:
        A :class:`ScanReport`.

    Raises:
        DataError: ``root`` is not a folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(
            f"data.root folder does not exist or is not a folder: {root}; set data.root to a "
            "folder of images, or leave it unset to use the embedded emoji"
        )
    files, problems = _walk(root)
    cache_path = _cache_file(root)
    cache = _read_cache(cache_path, root) if use_cache else {}
    results: dict[str, list] = {}
    todo: list[tuple[str, Path, os.stat_result]] = []
    report = ScanReport(root=root)
    for path, info in files:
        key = _relative(path, root)
        cached = cache.get(key)
        if cached is not None and cached[:2] == [info.st_mtime_ns, info.st_size]:
            results[key] = cached
            report.from_cache += 1
        else:
            todo.append((key, path, info))
    if todo:
        threads = workers or min(8, 2 * (os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=threads) as pool:
            checked = pool.map(lambda item: _check_file(item[1], item[2].st_size), todo)
            for (key, _, info), (width, height, problem) in zip(todo, checked):
                results[key] = [info.st_mtime_ns, info.st_size, width, height, problem]
    if use_cache and (todo or len(results) != len(cache)):
        _write_cache(cache_path, root, results)

    for path, _ in sorted(files, key=lambda item: _relative(item[0], root)):
        _, _, width, height, problem = results[_relative(path, root)]
        if problem is None and max_pixels is not None and width * height > max_pixels:
            problem = (
                f"{width}x{height} = {width * height:,} pixels is over data.max_pixels="
                f"{max_pixels:,}"
            )
        if problem is not None:
            report.skipped.append((path, problem))
            continue
        report.usable.append(path)
        report.small += int(min(width, height) < min_side)
    report.skipped.extend(problems)
    return report


def usable_images(report: ScanReport) -> list[Path]:
    """The usable files of a scan; one warning when some were skipped.

    Raises:
        DataError: nothing usable, with how many files were found and what to do.
    """
    root = report.root
    if not report.usable:
        if report.found == 0:
            raise DataError(
                f"no images in data.root={root} (looked recursively for "
                f"{', '.join(IMAGE_EXTENSIONS)}, any case, hidden files skipped"
                + (f"; {report.examples()}" if report.skipped else "")
                + "); point data.root at a folder of images"
            )
        raise DataError(
            f"none of the {report.found} image files in data.root={root} can be decoded "
            f"({report.examples()}); replace or remove them, or point data.root elsewhere"
        )
    if report.skipped:
        warnings.warn(
            f"skipping {len(report.skipped)} of {report.found} files in {root} that cannot be "
            f"used: {report.examples()}",
            CorruptImageWarning,
            stacklevel=2,
        )
    return report.usable
