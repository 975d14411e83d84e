"""Scaling out: DDP on two CPU processes (one DDP per GAN network), precision, per-rank randomness.

The two-process runs record, in every rank, the trained weights, the preprocessing generator's
states and the gradient elements each network all-reduced (``tests.helpers.RecordRank``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pirec_lightning.config import ConfigError
from pirec_lightning.models.precision import resolve_precision
from pirec_lightning.phases import PHASES
from pirec_lightning.training import train
from pirec_lightning.training.distributed import GANDDPStrategy

DDP = ("debug=tiny", "trainer=ddp_cpu", "trainer.devices=2")


def record(folder: Path) -> list[str]:
    return [
        "+callbacks.record._target_=tests.helpers.RecordRank",
        f"+callbacks.record.folder={folder}",
    ]


def ranks(folder: Path, phase: str) -> list[dict]:
    return [
        torch.load(folder / f"{phase}_rank{rank}.pt", map_location="cpu", weights_only=False)
        for rank in (0, 1)
    ]


def trainable(checkpoint: Path, phase: str) -> dict[str, int]:
    model = PHASES[phase].load_from_checkpoint(checkpoint, map_location="cpu")
    return {
        name: sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad)
        for name in model.ddp_networks
    }


def check_two_ranks(folder: Path, phase: str, last_ckpt: Path) -> None:
    """Identical weights, distinct preprocessing draws, each network synced once per step, and
    both ranks' random states in the checkpoint."""
    rank0, rank1 = ranks(folder, phase)
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["state_dict"].keys() == rank1["state_dict"].keys()
    for key, value in rank0["state_dict"].items():
        assert torch.equal(value, rank1["state_dict"][key]), f"{phase}: {key} differs across ranks"
    assert not torch.equal(rank0["first_state"], rank1["first_state"])
    assert rank0["val_psnr"] == rank1["val_psnr"]
    # each network's gradients went over the wire exactly once per generator step; the frozen
    # preliminary generator of refinement never did
    for rank in (rank0, rank1):
        assert set(rank["reduced"]) == {"generator", "discriminator"}
        for name, numel in trainable(last_ckpt, phase).items():
            assert rank["reduced"][name] == rank["steps"] * numel, (phase, name)
    state = torch.load(last_ckpt, map_location="cpu", weights_only=False)
    saved = state["PIRECDataModule"]["train_generators_by_rank"]
    assert len(saved) == 2
    for states, rank in zip(saved, (rank0, rank1)):
        (generator_state,) = states.values()
        assert torch.equal(generator_state, rank["last_state"])


def test_ddp_cpu_imitation_two_ranks(make_cfg, tmp_path):
    cfg = make_cfg(
        "phase=imitation", *DDP, *record(tmp_path / "ranks"), output_dir=tmp_path / "run"
    )
    metrics, objects = train(cfg)
    assert isinstance(objects["trainer"].strategy, GANDDPStrategy)
    assert math.isfinite(metrics["val/psnr"])
    last = Path(objects["last_ckpt"])
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 8
    check_two_ranks(tmp_path / "ranks", "imitation", last)


def test_bf16_mixed_on_cpu(make_cfg, tmp_path):
    cfg = make_cfg(
        "debug=tiny", "trainer.precision=bf16-mixed", "trainer.max_steps=2", output_dir=tmp_path
    )
    metrics, objects = train(cfg)
    assert objects["trainer"].precision == "bf16-mixed"
    assert math.isfinite(metrics["train/g_loss"]) and math.isfinite(metrics["val/psnr"])
    # autocast computes in bfloat16; the weights (and the checkpoint) stay float32
    state = torch.load(objects["last_ckpt"], map_location="cpu", weights_only=True)["state_dict"]
    assert {v.dtype for k, v in state.items() if k.endswith("weight")} == {torch.float32}


def test_precision_is_decided_at_run_time_and_checked(make_cfg):
    assert make_cfg("trainer=gpu").trainer.precision == "mixed"
    assert make_cfg("trainer=ddp").trainer.precision == "mixed"
    assert resolve_precision("mixed", "cpu") == "bf16-mixed"
    expected = (
        "16-mixed"
        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported()
        else "bf16-mixed"
    )
    assert resolve_precision("mixed", "gpu") == expected
    assert resolve_precision("32-true", "gpu") == "32-true"
    with pytest.raises(ConfigError, match="trainer.precision must be one of"):
        train(make_cfg("debug=tiny", "trainer.precision=8-true"))
    with pytest.raises(ConfigError, match="trainer.num_nodes"):
        train(make_cfg("debug=tiny", "trainer.num_nodes=0"))


@pytest.mark.slow
def test_ddp_cpu_every_phase_and_phase_all(make_cfg, tmp_path):
    """phase=all with two processes, then generating and refinement alone from its hand-overs."""
    run_dir, folder = tmp_path / "all", tmp_path / "ranks"
    metrics, _ = train(make_cfg("phase=all", *DDP, *record(folder), output_dir=run_dir))
    assert "refinement/val/psnr" in metrics
    for name in ("imitation", "generating", "refinement"):
        last = run_dir / name / "checkpoints" / "last.ckpt"
        assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 8
        assert (run_dir / name / "finished.json").is_file()
        check_two_ranks(folder, name, last)
    for name, source in (("generating", "imitation"), ("refinement", "generating")):
        folder = tmp_path / f"ranks_{name}"
        cfg = make_cfg(
            f"phase={name}",
            *DDP,
            f"init_from={run_dir / source / 'checkpoints' / 'last.ckpt'}",
            *record(folder),
            output_dir=tmp_path / name,
        )
        _, objects = train(cfg)
        check_two_ranks(folder, name, Path(objects["last_ckpt"]))


@pytest.mark.slow
def test_ddp_cpu_draws_are_reproducible_and_resume_per_rank(make_cfg, tmp_path):
    """4 steps then a resume to 6 draw, on every rank, what 6 steps in one go draw."""
    short = make_cfg("phase=imitation", *DDP, *record(tmp_path / "a"), output_dir=tmp_path / "a")
    _, objects = train(short)
    resumed = make_cfg(
        "phase=imitation",
        *DDP,
        "trainer.max_steps=6",
        f"ckpt_path={objects['last_ckpt']}",
        *record(tmp_path / "b"),
        output_dir=tmp_path / "b",
    )
    train(resumed)
    straight = make_cfg(
        "phase=imitation",
        *DDP,
        "trainer.max_steps=6",
        *record(tmp_path / "c"),
        output_dir=tmp_path / "c",
    )
    train(straight)
    a, b, c = (ranks(tmp_path / x, "imitation") for x in "abc")
    for rank in (0, 1):
        assert torch.equal(a[rank]["first_state"], c[rank]["first_state"])  # same seed, same draws
        assert torch.equal(b[rank]["last_state"], c[rank]["last_state"])  # resumed per rank
    assert not torch.equal(b[0]["last_state"], b[1]["last_state"])


def _disagreeing_rank(rank: int, port: int, folder: str) -> None:
    import torch.distributed as dist

    from pirec_lightning.errors import RanksDisagree
    from pirec_lightning.training.distributed import RankAgreement

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        agreement = RankAgreement({"phase.name": "imitation", "paths.output_dir": f"/runs/{rank}"})
        agreement.setup(None, None, "fit")
        message = "no error"
    except RanksDisagree as error:
        message = str(error)
    finally:
        dist.destroy_process_group()
    (Path(folder) / f"rank{rank}.txt").write_text(message)


def test_ranks_that_disagree_stop_together(tmp_path):
    """Two ranks with different run dirs (as two Slurm tasks with time-stamped defaults would
    have) both stop with the same message instead of one waiting forever."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    torch.multiprocessing.spawn(_disagreeing_rank, args=(port, str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        message = (tmp_path / f"rank{rank}.txt").read_text()
        assert message.startswith("ranks disagree on paths.output_dir: ['/runs/0', '/runs/1']")
        assert "hydra.run.dir" in message
