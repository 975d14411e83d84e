"""Reconstructor(compile=True): lazy, equal to eager, bounded recompilation, exportable.

The fast tests trace with TorchDynamo and run the captured graph eagerly (``backend="eager"``):
the wiring, the shape bookkeeping, export and the CLI without Inductor's C++ builds, which take
about a minute per shape on 2 cores. The ``slow`` tests compile with Inductor as users do.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from pirec_lightning.cli import main
from pirec_lightning.inference import Reconstructor
from pirec_lightning.inference import reconstructor as reconstructor_module
from pirec_lightning.inference.export import PARITY_TOLERANCE, export, run_exported

TOLERANCE = 1e-4


def inputs(batch=2, height=32, width=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    edge = (torch.rand(batch, 1, height, width, generator=g) > 0.85).float()
    return edge, torch.rand(batch, 3, height, width, generator=g)


@pytest.fixture
def dynamo_only(monkeypatch):
    """torch.compile traces with Dynamo and runs the graph as it is (no Inductor)."""
    real = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda fn, mode=None, **kw: real(fn, backend="eager", **kw)
    )
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def eager(tiny_run) -> Reconstructor:
    return Reconstructor.from_checkpoint(tiny_run["refinement"], device="cpu")


def test_compile_is_lazy_keeps_the_eager_modules_and_equals_eager(tiny_run, eager, dynamo_only):
    rec = Reconstructor.from_checkpoint(tiny_run["refinement"], device="cpu", compile=True)
    assert rec.use_compile and rec._compiled is None and rec.compiled_shapes == []  # lazy
    assert list(rec.state_dict()) == list(eager.state_dict())  # no _orig_mod. keys
    edge, color = inputs()
    final, first = rec.reconstruct(edge, color, return_preliminary=True)
    expected_final, expected_first = eager.reconstruct(edge, color, return_preliminary=True)
    torch.testing.assert_close(final, expected_final, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(first, expected_first, atol=TOLERANCE, rtol=0)
    assert rec.compiled_shapes == [((2, 1, 32, 32), True)]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # one graph, traced
    # the same shape again reuses it; another shape or refine=False is one more graph
    rec.reconstruct(edge, color)
    odd = inputs(1, 29, 37)
    torch.testing.assert_close(
        rec.reconstruct(*odd, refine=False),
        eager.reconstruct(*odd, refine=False),
        atol=1e-4,
        rtol=0,
    )
    assert rec.compiled_shapes == [((2, 1, 32, 32), True), ((1, 1, 29, 37), False)]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2
    assert type(rec.generator) is type(eager.generator)  # still the eager module
    assert rec.resolved_compile_mode() is None  # the CPU: the default mode
    # dropping the refiner (pirec reconstruct --no-refine) compiles the new pipeline afresh
    rec.refiner = None
    torch.testing.assert_close(rec.reconstruct(edge, color), expected_first, atol=TOLERANCE, rtol=0)
    assert rec.compiled_shapes == [((2, 1, 32, 32), False)]


def test_new_shapes_past_the_limit_run_eager_with_one_warning(eager, monkeypatch, dynamo_only):
    monkeypatch.setattr(reconstructor_module, "MAX_COMPILED_SHAPES", 1)
    rec = Reconstructor(eager.generator, eager.refiner, compile=True)
    rec.reconstruct(*inputs(1, 24, 24))
    with pytest.warns(UserWarning, match=r"compiled for 1 input shapes already; \(1, 1, 28, 28\)"):
        out = rec.reconstruct(*inputs(1, 28, 28))
    torch.testing.assert_close(out, eager.reconstruct(*inputs(1, 28, 28)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        rec.reconstruct(*inputs(1, 32, 32))
    assert rec.compiled_shapes == [((1, 1, 24, 24), True)]
    # a copy compiles its own modules afresh
    twin = copy.deepcopy(rec)
    assert twin._compiled is None and twin.compiled_shapes == []
    with pytest.raises(ValueError, match="compile_mode must be one of"):
        Reconstructor(eager.generator, compile=True, compile_mode="fastest")


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_export_from_a_compiled_reconstructor(tiny_run, tmp_path, format, dynamo_only):
    rec = Reconstructor.from_checkpoint(tiny_run["refinement"], device="cpu", compile=True)
    edge, color = inputs(1, 29, 33)
    compiled_out = rec.reconstruct(edge, color)  # compiled before the export
    path = tmp_path / f"pirec.{format}"
    assert export(rec, format, path) <= PARITY_TOLERANCE
    exported = run_exported(path, format, edge, color)
    assert float((exported - compiled_out).abs().max()) <= PARITY_TOLERANCE


def test_cli_reconstruct_compile(tiny_run, tmp_path, capsys, dynamo_only):
    from torchvision.utils import save_image

    edge, color = inputs(1, 32, 32)
    save_image(edge[0], tmp_path / "e.png")
    save_image(color[0], tmp_path / "c.png")
    out = tmp_path / "out.png"
    ckpt = str(tiny_run["refinement"])
    command = ["reconstruct", "--checkpoint", ckpt, "--device", "cpu", "--compile"]
    command += ["--edge", str(tmp_path / "e.png"), "--color", str(tmp_path / "c.png")]
    assert main([*command, "-o", str(out)]) == 0
    assert out.is_file() and f"wrote {out}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    assert "--compile" in capsys.readouterr().out


# ------------------------------------------------------------------------------ with Inductor
@pytest.mark.slow
@pytest.mark.parametrize("channels_last", [False, True], ids=["compiled", "channels_last"])
def test_inductor_equals_eager(eager, channels_last):
    """Inductor on the CPU (about a minute per shape on 2 cores when its cache is cold)."""
    torch._dynamo.reset()
    rec = Reconstructor(
        copy.deepcopy(eager.generator),
        copy.deepcopy(eager.refiner),
        compile=True,
        channels_last=channels_last,
    )
    if channels_last:
        weight = next(p for p in rec.generator.parameters() if p.dim() == 4)
        assert weight.is_contiguous(memory_format=torch.channels_last)
    edge, color = inputs(2, 30, 34)
    final, first = rec.reconstruct(edge, color, return_preliminary=True)
    expected_final, expected_first = eager.reconstruct(edge, color, return_preliminary=True)
    torch.testing.assert_close(final, expected_final, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(first, expected_first, atol=TOLERANCE, rtol=0)
    assert final.is_contiguous() and rec.compiled_shapes == [((2, 1, 30, 34), True)]


@pytest.mark.slow
def test_cli_reconstruct_compile_folder_with_inductor(tiny_run, tmp_path, capsys):
    from torchvision.utils import save_image

    torch._dynamo.reset()
    for index in (1, 2):
        edge, color = inputs(1, 32, 32, seed=index)
        save_image(edge[0], tmp_path / f"{index}_e.png")
        save_image(color[0], tmp_path / f"{index}_c.png")
    ckpt = str(tiny_run["refinement"])
    command = ["reconstruct", "--checkpoint", ckpt, "--device", "cpu", "--compile"]
    command += ["--input-dir", str(tmp_path), "--output-dir", str(tmp_path / "out")]
    assert main(command) == 0
    assert "wrote 2 images" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1_out.png", "2_out.png"]


@pytest.mark.slow
def test_a_compiler_that_cannot_work_falls_back_to_eager_with_one_warning(
    tiny_run, eager, monkeypatch
):
    """No C++ compiler on the machine: Inductor fails; the Reconstructor warns and runs eager."""
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/c++",))
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
    torch._dynamo.reset()
    rec = Reconstructor.from_checkpoint(tiny_run["refinement"], device="cpu", compile=True)
    edge, color = inputs(1, 24, 24)
    with pytest.warns(UserWarning, match="torch.compile failed, running eager") as caught:
        out = rec.reconstruct(edge, color)
    assert any("No working C++ compiler" in str(w.message) for w in caught)
    torch.testing.assert_close(out, eager.reconstruct(edge, color), atol=TOLERANCE, rtol=0)
    assert not rec.use_compile
    torch._dynamo.reset()
