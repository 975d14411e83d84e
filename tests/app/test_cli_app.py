"""`pirec app`: its arguments, its one-line errors, and the real command serving a checkpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pirec_lightning.cli import main
from tests.app.conftest import free_port
from tests.conftest import PROJECT_ROOT


def test_help_lists_the_app_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["app", "--help"])
    text = capsys.readouterr().out
    assert "--checkpoint" in text and "--pirec-generator" in text and "--host" in text
    assert "pirec app --checkpoint" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pirec-refiner", "R.pth"], "--pirec-refiner goes with --pirec-generator"),
        (["--checkpoint", "/nonexistent/last.ckpt"], "/nonexistent/last.ckpt"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["app", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_a_taken_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot serve on 127.0.0.1:{port}") and "\n" not in err


@pytest.mark.slow  # a fresh interpreter imports torch and Gradio: ~10 s on 2 idle cores
def test_the_command_serves_a_checkpoint_on_loopback(tiny_run: dict[str, Path]) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "src"), str(PROJECT_ROOT)]),
    }
    command = [sys.executable, "-m", "pirec_lightning.cli", "app", "--port", str(port)]
    command += ["--checkpoint", str(tiny_run["refinement"]), "--device", "cpu"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, config = time.monotonic() + 120, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert config is not None, (
            server.stdout.read().decode() if server.poll() is not None else "no answer"
        )
        text = str(config["components"])
        assert str(tiny_run["refinement"]) in text and "canvas 32 px" in text
    finally:
        server.terminate()
        server.wait(timeout=30)
