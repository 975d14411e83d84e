"""scripts/gpu_round.py: the GPU round end to end on the CPU (``--smoke``: benchmarks skipped with
their reason, a few steps continued from a bundled-format file, the candidate's card, the replace
rule), and the pieces it is made of: the history, the replace rule both ways, ``--apply``, the
hand-over of the first stage's own discriminator, the benchmark figures against their targets."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from pirec_lightning import pretrained
from pirec_lightning.config import compose_config
from pirec_lightning.phases import GeneratingPhase, RefinementPhase, init_from_checkpoint
from pirec_lightning.pretrained.history import (
    REPLACE_RULE,
    backfill_row,
    compare_quality,
    comparison_markdown,
    history_markdown,
    history_row,
    history_totals,
    losses_text,
    with_history,
)
from pirec_lightning.training.builders import build_datamodule, build_phase
from pirec_lightning.training.plan import stage_config
from tests.conftest import PROJECT_ROOT
from tests.phases.conftest import TINY_LOSS, TINY_MODEL

SCRIPT = PROJECT_ROOT / "scripts" / "gpu_round.py"
#: the bundled model's sizes, shrunk: what the smoke round continues
TINY = [
    "experiment=gpu_round",
    "data=avatars",  # the recipe's mix needs the Iconify tarballs (npm): the avatars need nothing
    "model.generator.base_channels=8",
    "model.generator.res_blocks=1",
    "model.discriminator.base_channels=8",
    "data.image_size=32",
    "data.avatars.count=48",
]


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_round", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_round = _load_script()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _row(set_name: str, edges: str, psnr: float, lpips: float | None = None) -> dict:
    final = {"psnr": psnr, "ssim": 0.5} | ({"lpips": lpips} if lpips is not None else {})
    return {
        "model": "m",
        "set": set_name,
        "edges": edges,
        "images": 8,
        "image_size": 32,
        "stages": {"color_domain": {"psnr": 10.0, "ssim": 0.4}, "refined": final},
    }


def make_tiny_bundle(folder: Path, name: str = "tiny-32") -> Path:
    """A bundled-format file at tiny sizes (``write_pretrained`` on a refinement checkpoint of
    the round's recipe) and its card, whose history has one row and a key the round does not
    own."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = compose_config(TINY, output_dir=folder / "run")
    stage = stage_config(cfg, "refinement", folder / "run")
    torch.manual_seed(0)
    module, datamodule = build_phase(stage), build_datamodule(stage)
    checkpoint = {
        "state_dict": module.state_dict(),
        "pirec_phase": "refinement",
        "hyper_parameters": json.loads(json.dumps(dict(module.hparams), default=str)),
        "datamodule_hyper_parameters": json.loads(json.dumps(dict(datamodule.hparams))),
    }
    torch.save(checkpoint, folder / "tiny.ckpt")
    pretrained.write_pretrained(folder / "tiny.ckpt", folder / f"{name}.safetensors")
    row = history_row(
        date="2026-12-01",
        commit="0" * 40,
        hardware="a test",
        steps={"imitation": 1, "generating": 1, "refinement": 1},
        gpu_seconds=1,
        data="avatars",
        losses="L1",
        started_from="scratch",
    )
    card = with_history({"name": name, "summary": "a tiny test model", "app_key": 7}, [row])
    (folder / f"{name}.json").write_text(json.dumps(card))
    return folder / f"{name}.safetensors"


# ----------------------------------------------------------------------------- the rule


def test_rule_replaces_when_no_set_is_worse_and_mean_lpips_is_lower():
    bundled = [_row("a", "canny", 15.0, 0.30), _row("b", "canny", 12.0, 0.40)]
    candidate = [_row("a", "canny", 14.95, 0.25), _row("b", "canny", 13.0, 0.38)]
    verdict = compare_quality(candidate, bundled)
    assert verdict["better"] and verdict["metric"] == "lpips"
    assert verdict["worst_psnr_delta"] == pytest.approx(-0.05)
    assert "better on 2 held-out rows" in verdict["reason"]
    table = comparison_markdown(verdict)
    assert "| a (8, 32 px) | canny | 15.00 | 14.95 | -0.05 dB | 0.300 | 0.250 |" in table


def test_rule_keeps_the_bundle_when_one_set_is_worse_or_lpips_is_not_better():
    bundled = [_row("a", "canny", 15.0, 0.30), _row("b", "canny", 12.0, 0.40)]
    worse_set = [_row("a", "canny", 14.8, 0.10), _row("b", "canny", 14.0, 0.10)]
    verdict = compare_quality(worse_set, bundled)
    assert not verdict["better"] and "a / canny -0.20 dB" in verdict["reason"]
    same_lpips = [_row("a", "canny", 16.0, 0.30), _row("b", "canny", 13.0, 0.40)]
    assert not compare_quality(same_lpips, bundled)["better"]


def test_rule_falls_back_to_mean_psnr_without_lpips_and_needs_common_sets():
    bundled = [_row("a", "canny", 15.0), _row("b", "drawn", 12.0)]
    better = [_row("a", "canny", 15.5), _row("b", "drawn", 12.0)]
    verdict = compare_quality(better, bundled)
    assert verdict["better"] and verdict["metric"] == "psnr" and "no LPIPS" in verdict["reason"]
    assert not compare_quality([_row("a", "canny", 15.0), _row("b", "drawn", 12.0)], bundled)[
        "better"
    ]
    # one side with LPIPS, the other without: the fallback, not a comparison with a hole
    half = [_row("a", "canny", 15.5, 0.9), _row("b", "drawn", 12.0, 0.9)]
    assert compare_quality(half, bundled)["metric"] == "psnr"
    other_sets = compare_quality([_row("c", "canny", 30.0)], bundled)
    assert not other_sets["better"] and other_sets["reason"] == "no held-out set in common"
    assert "0.1 dB" in REPLACE_RULE and "LPIPS" in REPLACE_RULE


def test_history_rows_totals_and_markdown():
    old_card = {
        "commit": "a" * 40,
        "hardware": "one H200",
        "steps": {"imitation": 500, "generating": 651, "refinement": 500},
        "wall_minutes": 6.9,
        "data": {"description": "`data=avatars`: 20000 DiceBear avatars"},
        "command": "python train.py experiment=sketch_gpu",
    }
    first = backfill_row(old_card, "2026-12-04", "L1")
    assert first["gpu_seconds"] == 414.0 and first["data"] == "data=avatars"
    assert first["steps"] == old_card["steps"] and first["started_from"] == "scratch"
    rows = [
        history_row(
            date="2026-12-04",
            commit="a" * 40,
            hardware="one H200",
            steps={"generating": 651, "refinement": 500, "imitation": 500},
            gpu_seconds=414,
            data="avatars",
            losses="L1 1, lsgan 0.1, no VGG terms",
            started_from="scratch",
        ),
        history_row(
            date="2026-12-06",
            commit="b" * 40,
            hardware="one H100",
            steps={"generating": 900, "refinement": 300},
            gpu_seconds=300,
            data="avatars",
            losses="L1",
            started_from="sketch-128 (history row 1)",
            note="a round",
        ),
    ]
    assert list(rows[0]["steps"]) == ["imitation", "generating", "refinement"]
    totals = history_totals(rows)
    assert totals == {
        "runs": 2,
        "steps": {"imitation": 500, "generating": 1551, "refinement": 800},
        "gpu_seconds": 714.0,
    }
    text = history_markdown(with_history({"name": "x"}, rows))
    assert text.startswith("## History")
    assert "| total | 2 runs | | | imitation 500, generating 1,551, refinement 800 | 714 |" in text
    assert "Replace rule" in text and "2. a round" in text


def test_losses_text_says_whether_the_vgg_terms_ran():
    loss = {"l1": 1.0, "adversarial": 0.0, "perceptual": 0.1, "style": 250.0, "vgg": "vgg16"}
    assert losses_text(loss, "vgg16") == "L1 1, perceptual 0.1 + style 250 (vgg16)"
    assert losses_text({**loss, "vgg": "auto"}, "off: no weights") == "L1 1, no VGG terms"


def test_bundled_card_keeps_its_history():
    card = pretrained.model_card(pretrained.DEFAULT_MODEL)
    if "history" not in card:
        pytest.skip("the bundled card has no history yet")
    assert card["history_totals"] == history_totals(card["history"])
    assert card["history"][0]["started_from"] == "scratch"
    markdown = (pretrained.MODELS_DIR / "MODEL_CARD.md").read_text()
    assert "## History" in markdown and REPLACE_RULE in markdown


# ----------------------------------------------------------------------------- the pieces


def test_generating_takes_the_first_stage_and_its_own_discriminator():
    torch.manual_seed(0)
    source = RefinementPhase(model=TINY_MODEL, loss=TINY_LOSS).state_dict()
    first_d = {
        "preliminary_discriminator." + k.removeprefix("discriminator."): torch.randn_like(v)
        for k, v in source.items()
        if k.startswith("discriminator.")
    }
    target = GeneratingPhase(model=TINY_MODEL, loss=TINY_LOSS)
    init_from_checkpoint(target, {"state_dict": {**source, **first_d}})
    for k, v in target.discriminator.state_dict().items():
        torch.testing.assert_close(v, first_d["preliminary_discriminator." + k])
    for k, v in target.generator.state_dict().items():
        torch.testing.assert_close(v, source["preliminary_generator." + k])
    # a file without it (the bundled sketch-128 of history row 1): refinement's discriminator
    other = GeneratingPhase(model=TINY_MODEL, loss=TINY_LOSS)
    init_from_checkpoint(other, {"state_dict": source})
    for k, v in other.discriminator.state_dict().items():
        torch.testing.assert_close(v, source["discriminator." + k])


def test_targets_put_each_figure_next_to_its_goal_and_say_why_one_is_missing():
    results = {
        "train_step_eager": {
            "status": "ok",
            "result": {
                "lightning_images_per_s": 1500.0,
                "lightning_ahead_images_per_s": 1800.0,
                "best_placement": "ahead",
                "best_placement_vs_bare_loop": 1.08,
                "ratio_lightning_vs_loop": 1.2,
            },
        },
        "train_step_compiled": {"status": "failed", "why": "exit 1: no C++ compiler"},
        "preprocess_batch512": {"status": "ok", "result": {"engine_images_per_s": 25000.0}},
        "preprocess_batch64": {"status": "timed out", "why": "stopped at its cap of 14 s"},
        "inference": {"status": "skipped", "why": "no time left in the first 150 s"},
    }
    rows = {r["target"]: r for r in gpu_round.targets(results)}
    eager = rows["training, eager (images/s, best placement)"]
    assert eager["figure"] == 1800.0 and eager["met"] is False and eager["arm"] == "lightning_ahead"
    assert rows["(a)/(b) eager, best placement"]["met"] is True
    assert rows["(a)/(c) eager: Lightning against the loop making its inputs"]["met"] is False
    assert rows["preprocessing engine at batch 512 (images/s)"]["met"] is True
    compiled = rows["training, compiled, 128 px batch 64 (images/s, best placement)"]
    assert compiled["figure"] is None and compiled["why"] == "exit 1: no C++ compiler"
    assert rows["preprocessing engine at batch 64 (images/s)"]["why"].startswith("stopped")
    assert gpu_round.compile_works(results)[0] is False
    assert gpu_round.placement_from(results)[0] == "ahead"


def test_a_command_past_its_time_is_stopped_within_it(tmp_path):
    log = tmp_path / "log"
    started = time.monotonic()
    done = gpu_round.run_logged(
        [sys.executable, "-c", "import time; print('{}'); time.sleep(30)"], 1.0, log
    )
    assert done["timed_out"] and time.monotonic() - started < 5
    failed = gpu_round.run_logged([sys.executable, "-c", "raise SystemExit('bad input')"], 20, log)
    assert failed["returncode"] == 1 and gpu_round._last_error_line(log) == "bad input"
    assert gpu_round.max_time(3725) == "00:01:02:05"


def test_warm_data_renders_every_split(tmp_path, monkeypatch, capsys):
    cfg = compose_config(TINY, output_dir=tmp_path / "run")
    file = gpu_round._stage_file(cfg, "generating", tmp_path, "none", 1, 1, tmp_path / "w.yaml")
    monkeypatch.setenv("PIREC_CACHE_DIR", str(tmp_path / "cache"))
    assert gpu_round.warm_data(str(file), 0) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 48
    pictures = [p for p in (tmp_path / "cache").rglob("*.png") if not p.name.endswith(".line.png")]
    assert len(pictures) == 48


def test_carry_takes_what_the_device_lacks_and_unpacks_wheels(tmp_path):
    spec = importlib.util.spec_from_file_location("build_carry", SCRIPT.with_name("build_carry.py"))
    build_carry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_carry)
    needed = build_carry.needed()
    assert {"hydra-core", "omegaconf", "antlr4-python3-runtime", "kornia", "resvg-py"} <= set(
        needed
    )
    assert {"dicebear-core", "dicebear-styles"} <= set(needed)
    assert not {"torch", "pytorch-lightning", "numpy", "wandb"} & set(needed)
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/__init__.py", "VALUE = 1\n")
        archive.writestr("pkg-1.0.data/purelib/pkg_extra.py", "EXTRA = 2\n")
        archive.writestr("pkg-1.0.data/scripts/tool", "#!/bin/sh\n")
        archive.writestr("pkg-1.0.dist-info/METADATA", "Name: pkg\nVersion: 1.0\n")
    build_carry.unpack(wheel, tmp_path / "site")
    site = tmp_path / "site"
    files = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert files == ["pkg-1.0.dist-info/METADATA", "pkg/__init__.py", "pkg_extra.py"]
    assert "bare Python 3.12" in build_carry.__doc__


def _apply_with(out: Path, bundle: Path, candidate_shift: float) -> int:
    """``--apply`` on a copy of a finished round whose candidate rows are moved by
    ``candidate_shift`` dB (the rule, applied to a win and to a loss)."""
    copy = out.parent / f"apply{candidate_shift:+}"
    shutil.copytree(out, copy)
    card_file = copy / f"{bundle.stem}.json"
    card = json.loads(card_file.read_text())
    base = card["comparison"]["bundled_quality"]
    card["quality"] = [
        {**row, "model": bundle.stem, "stages": {"refined": {"psnr": psnr}}}
        for row, psnr in ((r, r["stages"]["refined"]["psnr"] + candidate_shift) for r in base)
    ]
    card_file.write_text(json.dumps(card))
    return gpu_round.main(["--apply", str(copy), "--model", str(bundle)])


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def smoke_round(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu_round")
    bundle = make_tiny_bundle(folder / "bundle")
    original = folder / "original.safetensors"
    shutil.copyfile(bundle, original)
    (folder / "original.json").write_text((bundle.with_suffix(".json")).read_text())
    out = folder / "round"
    empty = folder / "no_weights"  # perceptual metrics off: they cost a minute on a CPU
    empty.mkdir()
    env = {**os.environ, "PIREC_WEIGHTS_DIR": str(empty), "TORCH_HOME": str(empty)}
    command = [sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--deadline", "120"]
    command += ["--out", str(out), "--work", str(folder / "work"), "--model", str(bundle)]
    command += ["--emoji-size", "32", "data=avatars"]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    return {"out": out, "bundle": bundle, "original": original, "seconds": seconds, "done": done}


def test_smoke_round_skips_the_benchmarks_saying_why_and_keeps_its_deadline(smoke_round):
    out = smoke_round["out"]
    assert smoke_round["seconds"] < 120 + 5  # the interpreter's own start before the clock
    figures = json.loads((out / "figures.json").read_text())
    assert figures["environment"]["precision"] == "32-true" and figures["environment"]["torch"]
    assert {b["status"] for b in figures["benchmarks"].values()} == {"skipped"}
    assert all("--smoke" in b["why"] for b in figures["benchmarks"].values())
    assert all(t["figure"] is None and "--smoke" in t["why"] for t in figures["targets"])
    assert len(list(out.iterdir())) <= 6  # all of them come back from a device machine


def test_smoke_round_continues_both_stages_from_the_bundle(smoke_round):
    record = json.loads((smoke_round["out"] / "round.json").read_text())
    phases = record["phases"]
    assert phases["generating"]["steps"] == 3 and phases["refinement"]["steps"] == 2
    assert phases["generating"]["init_from"].endswith("bundled.ckpt")
    assert phases["refinement"]["init_from"].endswith("refinement_init.ckpt")
    assert record["history_row"]["steps"] == {"generating": 3, "refinement": 2}
    candidate = pretrained.read_pretrained(path=smoke_round["out"] / "tiny-32.safetensors")
    state = candidate["state_dict"]
    assert any(k.startswith("preliminary_discriminator.") for k in state)
    bundled = pretrained.read_pretrained(path=smoke_round["original"])["state_dict"]
    moved = [k for k in bundled if not torch.equal(bundled[k], state[k])]
    assert any(k.startswith("preliminary_generator.") for k in moved)
    assert any(k.startswith("generator.") for k in moved)


def test_smoke_round_writes_the_card_and_applies_the_rule(smoke_round):
    out, bundle = smoke_round["out"], smoke_round["bundle"]
    record = json.loads((out / "round.json").read_text())
    card = json.loads((out / "tiny-32.json").read_text())
    assert card["app_key"] == 7 and card["summary"] == "a tiny test model"  # not ours: kept
    assert [r["hardware"] for r in card["history"]][0] == "a test" and len(card["history"]) == 2
    assert card["steps"] == card["history_totals"]["steps"]
    assert card["comparison"]["against"] == "tiny-32 (bundled)"
    assert {r["edges"] for r in card["comparison"]["rows"]} >= {"canny", "line_art"}
    markdown = (out / "MODEL_CARD.md").read_text()
    assert "## Against the bundled model" in markdown and "## History" in markdown
    assert "**The candidate is " in markdown
    verdict = compare_quality(card["quality"], card["comparison"]["bundled_quality"])
    assert record["verdict"]["better"] == verdict["better"]
    if verdict["better"]:  # replaced: the bundle is the candidate now
        assert record["replaced"] and _sha(bundle) == _sha(out / "tiny-32.safetensors")
    else:
        assert not record["replaced"] and _sha(bundle) == _sha(smoke_round["original"])
    assert str(len(card["history"])) in record["commit_message"]


def test_apply_replaces_only_a_winner_of_the_same_bundle(smoke_round, capsys):
    out, bundle = smoke_round["out"], smoke_round["bundle"]
    shutil.copyfile(smoke_round["original"], bundle)  # the file the candidate was compared with
    shutil.copyfile(smoke_round["original"].with_suffix(".json"), bundle.with_suffix(".json"))
    assert _apply_with(out, bundle, -1.0) == 0
    assert "stays" in capsys.readouterr().out and _sha(bundle) == _sha(smoke_round["original"])
    assert _apply_with(out, bundle, +1.0) == 0
    assert "replaced" in capsys.readouterr().out
    assert _sha(bundle) == _sha(out / "tiny-32.safetensors")
    # now the bundle is another file than the one compared against: refused in one line
    shutil.copytree(out, out.parent / "again")
    assert gpu_round.main(["--apply", str(out.parent / "again"), "--model", str(bundle)]) == 2
    assert "sha256 differs" in capsys.readouterr().err


@pytest.mark.slow
def test_a_round_cut_by_sigterm_keeps_its_weights_and_stops(tmp_path):
    """SIGTERM at the deadline (what ``run_logged`` sends): Lightning saves ``last.ckpt``, the
    training process records the cut phase and starts no other."""
    import signal

    bundle = make_tiny_bundle(tmp_path / "bundle")
    work = tmp_path / "work"
    work.mkdir()
    overrides = [*TINY, *gpu_round.SMOKE_OVERRIDES, "trainer.precision=32-true"]
    cfg = compose_config(overrides, output_dir=work / "train")
    bundled_ckpt = work / "bundled.ckpt"
    torch.save(pretrained.read_pretrained(path=bundle), bundled_ckpt)
    stages = {
        n: str(gpu_round._stage_file(cfg, n, work, str(bundled_ckpt), 1, -1))
        for n in gpu_round.STAGES
    }
    plan = {
        "stages": stages,
        "share": {"generating": 0.5, "refinement": 0.5},
        "train_end": time.time() + 3600,  # only the signal ends it
        "startup_s": 0,
        "bundled_ckpt": str(bundled_ckpt),
        "record": str(work / "phases.json"),
    }
    (work / "plan.json").write_text(json.dumps(plan))
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--train", str(work / "plan.json")],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    last = work / "train" / "generating" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert last.is_file(), "no periodic checkpoint before the signal"
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    record = json.loads((work / "phases.json").read_text())
    assert record["generating"]["status"] == "stopped at the deadline"
    assert "refinement" not in record
    assert gpu_round._steps(last) >= 2
