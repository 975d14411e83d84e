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


def taken_port() -> tuple[socket.socket, int]:
    """A listening socket on a loopback port whose next port is free."""
    while True:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                taken.close()
                continue
        taken.listen()
        return taken, port


def test_a_taken_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 27 row 6: only the error and the next free port; no "serving on" line first, no
    Gradio advice about GRADIO_SERVER_PORT."""
    taken, port = taken_port()
    with taken:
        assert main(["app", "--port", str(port)]) == 2
    shown = capsys.readouterr()
    assert shown.err == f"error: port {port} is in use; try --port {port + 1}\n"
    assert "serving on" not in shown.out


def test_launch_checks_the_port_before_serving(capsys: pytest.CaptureFixture[str]) -> None:
    from pirec_lightning.app import build_app, launch
    from pirec_lightning.app.page import check_port
    from pirec_lightning.errors import AppError

    taken, port = taken_port()
    with taken, pytest.raises(AppError) as caught:
        launch(build_app(None, examples=[]), port=port, block=False)
    assert str(caught.value) == f"port {port} is in use; try --port {port + 1}"
    assert capsys.readouterr().out == ""  # no "serving on" line
    check_port("127.0.0.1", port)  # free again once the other server is gone


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
