"""Training progress when the output is not a terminal (issue 27 row 3): plain lines every N
steps or seconds, and no rich bar frozen in the log."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl

from pirec_lightning.training import train
from pirec_lightning.training.callbacks import PIRECProgressBar

ROOT = Path(__file__).resolve().parents[2]
#: what a rich bar leaves in a log: its speed and separator columns, Lightning's version number
BAR_FRAGMENTS = ("it/s", "•", "v_num", "━╸", "\r", "\x1b[")
LINE = re.compile(
    r"imitation step (\d+)/(\d+), [\d.]+ steps/s, \d+:\d\d:\d\d left, g_loss [\d.]+, d_loss [\d.]+"
)


def test_plain_lines_and_no_bar_when_the_output_is_not_a_terminal(
    make_cfg, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # pytest's captured stdout is not a terminal, as `python train.py ... > log`
    bar = "+callbacks.bar={_target_:pirec_lightning.training.callbacks.PIRECProgressBar,"
    bar += "every_n_steps:2,every_seconds:null}"
    overrides = ["phase=imitation", "debug=tiny", "trainer.max_steps=4", bar]
    with caplog.at_level(logging.INFO):
        quiet = ["trainer.limit_val_batches=0", "~logger", "~callbacks.lr_monitor"]
        _, objects = train(make_cfg(*overrides, *quiet))
    shown = capsys.readouterr()
    for fragment in BAR_FRAGMENTS:
        assert fragment not in shown.out + shown.err, f"a bar fragment {fragment!r} in the output"
    (progress,) = [c for c in objects["trainer"].callbacks if isinstance(c, PIRECProgressBar)]
    assert progress.plain_lines and not progress.is_enabled  # rich stays off
    # the first step says it runs and how fast, then every 2 steps, the last one
    steps = [(int(m.group(1)), int(m.group(2))) for m in map(LINE.search, caplog.messages) if m]
    assert steps == [(1, 4), (2, 4), (4, 4)], caplog.text


@pytest.mark.parametrize("live", [True, False])
def test_the_rich_bar_on_a_terminal_plain_lines_elsewhere(monkeypatch, live: bool) -> None:
    from pirec_lightning.training import callbacks

    monkeypatch.setattr(callbacks, "_live_console", lambda: live)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False)
    bar = PIRECProgressBar()
    assert (bar.every_n_steps, bar.every_seconds) == (None, 30.0)  # a line every 30 s
    bar.setup(trainer, pl.LightningModule(), "fit")
    assert bar.plain_lines is not live and bar.is_enabled is live
    forced = PIRECProgressBar(plain=True)
    forced.setup(trainer, pl.LightningModule(), "fit")
    assert forced.plain_lines and not forced.is_enabled
    with pytest.raises(ValueError, match="every_n_steps must be 1 or more"):
        PIRECProgressBar(every_n_steps=0)


@pytest.mark.slow  # a fresh interpreter imports torch and Lightning: ~10 s on 2 idle cores
def test_train_py_into_a_file_has_plain_lines_and_no_bar(tmp_path: Path) -> None:
    """The documented `python train.py ... > log`: a real debug=tiny run, stdout to a file."""
    log_file = tmp_path / "log"
    command = [sys.executable, str(ROOT / "train.py"), "phase=imitation", "debug=tiny"]
    command += ["trainer.max_steps=8", f"hydra.run.dir={tmp_path / 'run'}"]
    with log_file.open("w") as out:
        done = subprocess.run(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=300, check=False
        )
    text = log_file.read_text()
    assert done.returncode == 0, text[-3000:]
    for fragment in BAR_FRAGMENTS:
        assert fragment not in text, f"a bar fragment {fragment!r} in the log"
    steps = [(int(m.group(1)), int(m.group(2))) for m in map(LINE.search, text.splitlines()) if m]
    assert steps[0] == (1, 8) and steps[-1] == (8, 8), text[-3000:]
    assert text.index("imitation step 8/8") < text.index("training stopped")
