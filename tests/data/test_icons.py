"""data=icons: Iconify SVGs, licences, refused sets, tarballs, split, cache; real sets if cached."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pirec_lightning.data import icons, lineart, svg_pairs
from pirec_lightning.data.emoji_svg import cache_dir as default_cache_dir
from pirec_lightning.data.iconify import icon_data, icon_names, icon_svg
from pirec_lightning.data.icons import (
    HELDOUT_SETS,
    ICON_SETS,
    IconDataset,
    attribution_markdown,
    check_icon_settings,
    icon_group_key,
    icon_items,
    icon_set,
    render_icon,
    set_tarball,
)
from pirec_lightning.data.lineart import line_art, line_art_figures, render_rgb
from pirec_lightning.errors import DataError, one_line
from tests.data.fake_iconify import fake_icons, make_tarball

pytest.importorskip("resvg_py")

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Two fake sets (MIT, line art; CC0, pictures) as tarballs in a folder, pinned."""
    folder = tmp_path / "tarballs"
    for name, spdx, line in (("fake-lines", "MIT", True), ("fake-pictures", "CC0-1.0", False)):
        _, pin = make_tarball(folder, name, spdx=spdx, line_art=line)
        monkeypatch.setitem(ICON_SETS, name, pin)
    return folder


def _render(svg: str, size: int = 32) -> np.ndarray:
    return render_rgb(svg, size)


def test_aliases_flips_and_turns_render_as_iconify_draws_them() -> None:
    data = fake_icons("x")
    arrow = _render(icon_svg(data, "arrow"))
    assert np.array_equal(_render(icon_svg(data, "arrow-flipped")), arrow[:, ::-1])
    assert np.array_equal(_render(icon_svg(data, "arrow-turned")), np.rot90(arrow, k=-1))
    assert np.array_equal(_render(icon_svg(data, "arrow-back")), arrow)  # two flips cancel
    assert np.array_equal(_render(icon_svg(data, "arrow-down")), arrow[::-1, ::-1])
    assert not np.array_equal(arrow, arrow[:, ::-1])  # the drawing is not symmetric
    # the set's width/height are the defaults; an icon's own width wins; a square render
    # keeps the proportions (the 24 x 16 box is widened to 24 x 24, centred)
    assert (icon_data(data, "arrow").width, icon_data(data, "wide").width) == (16.0, 24.0)
    wide = _render(icon_svg(data, "wide"), 48)
    red = (wide[..., 0] > 200) & (wide[..., 1] < 100)
    rows = np.flatnonzero(red.any(1))
    assert red[:, 0].any() and red[:, -1].any() and (rows.min(), rows.max()) == (16, 31)
    with pytest.raises(KeyError, match="no icon"):
        icon_svg(data, "missing")


def test_names_leave_out_hidden_icons_and_plain_renames() -> None:
    names = icon_names(fake_icons("x"))
    assert "old-name" not in names and "arrow-copy" not in names
    assert {"arrow-flipped", "arrow-turned", "arrow-back"} <= set(names)
    assert icon_group_key("baby-dark-skin-tone", set(names)) == "baby"
    assert icon_group_key("vertical-traffic-light", {"vertical-traffic-light"}).endswith("light")


@pytest.mark.parametrize(
    "name", ["noto", "noto-v1", "openmoji", "@iconify-json/openmoji", "emojione-v1", "logos"]
)
def test_refused_sets_are_refused_by_name_before_any_fetch(tmp_path, name) -> None:
    with pytest.raises(DataError, match="refused by name") as error:
        IconDataset("train", 32, sets=[name], cache_dir=tmp_path)
    assert "\n" not in one_line(error.value) and not any(tmp_path.iterdir())
    with pytest.raises(DataError, match="refused by name"):
        check_icon_settings({"sets": [name]})


def test_a_refused_set_is_refused_even_pinned_and_at_hand(tmp_path, monkeypatch) -> None:
    for name in ("noto", "openmoji"):  # an MIT tarball of that name, pinned: still refused
        _, pin = make_tarball(tmp_path / "in", name, spdx="MIT")
        monkeypatch.setitem(ICON_SETS, name, pin)
        with pytest.raises(DataError, match="refused by name"):
            IconDataset("val", 32, sets=[name], heldout_sets=[], tarballs=tmp_path / "in")
        with pytest.raises(DataError, match="refused by name"):
            icon_set(name, tmp_path / "cache", tmp_path / "in")
    assert not (tmp_path / "cache").exists()


def test_a_refused_licence_is_one_line(tmp_path, monkeypatch) -> None:
    _, pin = make_tarball(tmp_path / "in", "fake-sa", spdx="CC-BY-SA-4.0")
    monkeypatch.setitem(ICON_SETS, "fake-sa", pin)
    with pytest.raises(DataError, match="'fake-sa' is licensed 'CC-BY-SA-4.0'") as error:
        icon_set("fake-sa", tmp_path / "cache", tmp_path / "in")
    assert "MIT, Apache-2.0, CC0 1.0 or CC BY 4.0" in str(error.value)


def test_tarballs_folder_integrity_and_missing_sources(tmp_path, fake, monkeypatch) -> None:
    cache = tmp_path / "cache"
    path = set_tarball("fake-lines", cache, fake)
    assert path.is_file() and path.parent == cache / "iconify" / "tarballs"
    assert set_tarball("fake-lines", cache, None) == path  # cached: no folder needed now
    # a tarball that is not the pinned one is refused and not kept
    make_tarball(tmp_path / "other", "fake-pictures", spdx="MIT")
    with pytest.raises(DataError, match="not the pinned"):
        set_tarball("fake-pictures", cache, tmp_path / "other")
    assert not (cache / "iconify" / "tarballs" / "iconify-json-fake-pictures-1.0.0.tgz").exists()
    # neither npm nor a folder: one line naming both ways
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DataError) as error:
        set_tarball("fake-pictures", cache, None)
    message = one_line(error.value)
    assert "install npm" in message and "data.icons.tarballs=DIR" in message
    with pytest.raises(DataError, match="no pinned version"):
        set_tarball("not-a-set", cache, fake)


def test_split_holds_out_whole_sets_and_keeps_groups_together(tmp_path, fake) -> None:
    sets = [icon_set(n, tmp_path, fake) for n in ("fake-lines", "fake-pictures")]
    held = ["fake-pictures"]
    splits = {s: icon_items(s, sets, held, (0.4, 0.3, 0.3), split_seed=3) for s in icons.SPLITS}
    assert not [item for item in splits["train"] if item[0] == "fake-pictures"]
    everything = icon_items("all", sets, held)
    assert sorted(sum(splits.values(), [])) == sorted(everything)
    for seed in range(20):  # skin tones with their base, flips with the icon they flip
        where = {
            item: s
            for s in icons.SPLITS
            for item in icon_items(s, sets[:1], [], (0.4, 0.3, 0.3), split_seed=seed)
        }
        base, arrow = where[("fake-lines", "baby")], where[("fake-lines", "arrow")]
        assert where[("fake-lines", "baby-dark-skin-tone")] == base
        assert where[("fake-lines", "arrow-flipped")] == where[("fake-lines", "arrow-turned")]
        assert where[("fake-lines", "arrow-flipped")] == arrow
    with pytest.raises(DataError, match="holds out every set"):
        icon_items("train", sets, ["fake-lines", "fake-pictures"])


def test_dataset_items_cache_and_attribution(tmp_path, fake, monkeypatch) -> None:
    cache = tmp_path / "cache"
    dataset = IconDataset(
        "all", 32, ["fake-lines", "fake-pictures"], [], cache_dir=cache, tarballs=fake
    )
    lines = [i for i, (s, _) in enumerate(dataset.items) if s == "fake-lines"]
    pictures = [i for i, (s, _) in enumerate(dataset.items) if s == "fake-pictures"]
    item = dataset[lines[0]]
    assert item["image"].shape == (3, 32, 32) and bool(item["has_line_art"])
    assert item["line_art"].sum() > 0 and 0 <= item["image"].min() <= item["image"].max() <= 1
    other = dataset[pictures[0]]
    assert not bool(other["has_line_art"]) and other["line_art"].sum() == 0
    dataset.packed = True
    assert torch.equal(dataset[pictures[0]][3], torch.full((32, 32), -1.0))

    def refuse(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(lineart, "render_png", refuse)
    monkeypatch.setattr(lineart, "line_art", refuse)
    dataset.packed = False
    assert torch.equal(dataset[lines[0]]["image"], item["image"])  # read from the cache
    assert not list(cache.rglob("*.part"))
    table = attribution_markdown(["fake-lines", "fake-pictures"], cache)
    assert "[Test Author](https://example.org/author)" in table and "CC0-1.0" in table
    assert "`@iconify-json/fake-lines@1.0.0`" in table


def test_a_pair_is_written_line_art_first(tmp_path, fake, monkeypatch) -> None:
    fake_set = icon_set("fake-lines", tmp_path, fake)
    written = []

    def killed_after_one_file(path, data):
        if written:
            raise KeyboardInterrupt
        written.append(path)
        svg_pairs.write_atomic(path, data)

    with pytest.raises(KeyboardInterrupt):
        svg_pairs.render_pair(
            lambda: icon_svg(fake_set.data, "arrow"),
            tmp_path / "arrow.png",
            tmp_path / "arrow.line.png",
            32,
            write=killed_after_one_file,
        )
    assert [p.name for p in written] == ["arrow.line.png"]
    assert not (tmp_path / "arrow.png").exists()
    picture, line = render_icon(fake_set, "arrow", 32, tmp_path)
    assert picture.is_file() and line is not None and line.is_file()


def test_config_and_settings_checks() -> None:
    config = OmegaConf.load(CONF / "icons.yaml")
    assert list(config.icons.heldout_sets) == list(HELDOUT_SETS) and config.icons.sets is None
    check_icon_settings(OmegaConf.to_container(config.icons))
    # the rule written in the config: the smallest line-art and picture-only pinned sets
    # (icon counts as the sets' info.json state them)
    totals = {
        "streamline-emojis": 787,
        "streamline-stickies-color": 200,
        "streamline-ultimate-color": 998,
        "icon-park": 2658,
        "fluent-emoji-flat": 3145,
        "emojione": 1834,
        "fxemoji": 1034,
        "flat-color-icons": 329,
    }
    assert set(totals) == set(ICON_SETS)
    for kind in (True, False):
        of_kind = [n for n, pin in ICON_SETS.items() if pin.line_art is kind]
        assert min(of_kind, key=totals.__getitem__) in HELDOUT_SETS
    with pytest.raises(DataError, match="unknown data.icons keys"):
        check_icon_settings({"set": ["icon-park"]})
    with pytest.raises(DataError, match="not among the sets"):
        check_icon_settings({"sets": ["icon-park"], "heldout_sets": ["emojione"]})
    with pytest.raises(DataError, match="data.icons.tarballs folder does not exist"):
        check_icon_settings({"tarballs": "/no/such/folder"})


# ------------------------------------------------------------------ the real sets, if cached
def _cached_folder(name: str) -> Path | None:
    """The folder of the user's cache holding set ``name``'s tarball (the tests run with a
    temporary ``$PIREC_CACHE_DIR`` unless one was set)."""
    pin = ICON_SETS[name]
    for root in (default_cache_dir(), Path.home() / ".cache" / "pirec_lightning"):
        folder = root / "iconify" / "tarballs"
        if (folder / f"iconify-json-{name}-{pin.version}.tgz").is_file():
            return folder
    return None


@pytest.mark.parametrize("name", list(ICON_SETS))
def test_real_sets_line_art_figures_on_fresh_renders(name, tmp_path) -> None:
    """Each pinned set present in the cache: its marking (line art or pictures only) holds on
    fresh renders of 30 icons at 128 px (docs/quality.md has the figures of 100)."""
    folder = _cached_folder(name)
    if folder is None:
        pytest.skip(f"{name} is not in the cache: python train.py data=icons fetches it")
    real = icon_set(name, tmp_path, folder)  # copied and verified into a fresh cache
    pick = np.random.default_rng(0).choice(len(real.names), 30, replace=False)
    figures = []
    for index in pick:
        svg = icon_svg(real.data, real.names[index])
        figures.append(line_art_figures(render_rgb(svg, 128), line_art(svg, 128, real.rules)))
    median = {k: float(np.median([f[k] for f in figures])) for k in figures[0]}
    if ICON_SETS[name].line_art and real.rules.thick == "thin":  # one line per stroke
        assert median["recall"] >= 0.75 and median["edge_recall"] >= 0.8, median
        assert median["thickness"] <= 1.0 and median["blob"] == 0, median
    elif ICON_SETS[name].line_art:
        assert median["recall"] >= 0.9 and median["edge_recall"] >= 0.85, median
        assert median["thickness"] <= 2.0 and median["blob"] == 0, median
    else:  # no ink outlines: the separation finds (almost) nothing to draw with
        assert median["share"] < 0.01 and median["edge_recall"] < 0.2, median


def test_readme_credits_every_pinned_set_with_its_licence() -> None:
    readme = (CONF.parents[1] / "README.md").read_text()
    section = readme.split("## Data attribution", 1)[1]
    licences = {
        "MIT": "MIT",
        "Apache-2.0": "Apache 2.0",
        "CC0-1.0": "CC0 1.0",
        "CC-BY-4.0": "CC BY 4.0",
    }
    for name, pin in ICON_SETS.items():
        row = next((line for line in section.splitlines() if line.startswith(f"| `{name}` |")), "")
        assert f"@iconify-json/{name}@{pin.version}" in row, name
        assert any(title in row.split("|")[-2] for title in licences.values()), row
