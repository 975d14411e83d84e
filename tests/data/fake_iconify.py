"""A small ``@iconify-json/<set>`` tarball made in the test, as ``npm pack`` names it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path

from pirec_lightning.data.icons import IconSetPin
from pirec_lightning.data.lineart import LineArtRules

# an L-shaped, two-colour drawing: any flip or turn of it is a different picture
ARROW = (
    '<path fill="#2a9df4" d="M2 2h8v4H6v8H2z"/>'
    '<path fill="none" stroke="#000" stroke-width="1" d="M2 2h8v4H6v8H2z"/>'
)


def fake_icons(prefix: str) -> dict:
    return {
        "prefix": prefix,
        "width": 16,
        "height": 16,
        "icons": {
            "arrow": {"body": ARROW},
            "wide": {"body": '<rect x="0" y="4" width="24" height="8" fill="#e33"/>', "width": 24},
            "baby": {"body": '<circle cx="8" cy="8" r="6" fill="#fc0"/>'},
            "baby-dark-skin-tone": {"body": '<circle cx="8" cy="8" r="6" fill="#630"/>'},
            "baby-light-skin-tone": {"body": '<circle cx="8" cy="8" r="6" fill="#fda"/>'},
            "old-name": {"body": ARROW, "hidden": True},
        },
        "aliases": {
            "arrow-flipped": {"parent": "arrow", "hFlip": True},
            "arrow-turned": {"parent": "arrow", "rotate": 1},
            "arrow-back": {"parent": "arrow-flipped", "hFlip": True},  # flips cancel: renamed
            "arrow-down": {"parent": "arrow-flipped", "vFlip": True},  # both: a half turn
            "arrow-copy": {"parent": "arrow"},  # the same picture: left out
        },
    }


def make_tarball(
    folder: Path, prefix: str, version: str = "1.0.0", spdx: str = "MIT", line_art: bool = True
) -> tuple[Path, IconSetPin]:
    """Write ``iconify-json-<prefix>-<version>.tgz`` into ``folder``; return it and its pin."""
    info = {
        "prefix": prefix,
        "name": f"Fake {prefix}",
        "author": {"name": "Test Author", "url": "https://example.org/author"},
        "license": {"title": spdx, "spdx": spdx, "url": "https://example.org/licence"},
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in (("info.json", info), ("icons.json", fake_icons(prefix))):
            payload = json.dumps(data).encode()
            entry = tarfile.TarInfo(f"package/{name}")
            entry.size = len(payload)
            archive.addfile(entry, io.BytesIO(payload))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"iconify-json-{prefix}-{version}.tgz"
    path.write_bytes(buffer.getvalue())
    digest = "sha512-" + base64.b64encode(hashlib.sha512(buffer.getvalue()).digest()).decode()
    return path, IconSetPin(version, digest, line_art=line_art, rules=LineArtRules())
