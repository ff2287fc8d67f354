"""Training: stages as data, one loop, exact resume after SIGKILL, two-process DDP, bad data, export.

Every run uses the tiny config on 8 real photos (MSRC-v2 with their masks) on the CPU, in one thread: on a
shared 2-core machine two spinning OpenMP threads per process run many times slower than one.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from recolorize.cli import main
from recolorize.config import STAGE_NAMES, TRAIN_CONFIGS, StageConfig, TrainConfig
from recolorize.data.pairs import PhotoDataset
from recolorize.errors import UserError
from recolorize.networks.model import RecolorModel
from recolorize.training import (
    METRIC_FIELDS,
    STAGE_ORDER,
    apply_overrides,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from recolorize.training.resume_state import (
    capture_rng,
    flatten_optimizer_state,
    restore_rng,
    unflatten_optimizer_state,
)
from recolorize.training.stages import STAGES, IdentityMixPairs, loss_weights, mask_bound

REPO = Path(__file__).resolve().parents[1]
N_PHOTOS = 8


def _env() -> dict[str, str]:
    """Subprocesses: the package from this checkout, as many threads as this process (same numerics)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    return env


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _train_args(photos: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "--config", "tiny", "--data", str(photos), "--run", str(run), *extra]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread in this process and (through OMP_NUM_THREADS) in the subprocesses."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photos(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 MSRC-v2 photos with their region masks, linked in the dataset's own layout."""
    source = shared_data / "msrc_v2"
    if not (source / "images").is_dir():
        pytest.skip(f"MSRC-v2 not found under {shared_data}")
    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    (root / "masks_segments").mkdir()
    for image in sorted((source / "images").glob("*.jpg"))[:N_PHOTOS]:
        (root / "images" / image.name).symlink_to(image)
        mask = source / "masks_segments" / f"{image.stem}.png"
        if mask.is_file():
            (root / "masks_segments" / mask.name).symlink_to(mask)
    return root


# --- pure parts ------------------------------------------------------------------------------------------
def test_mask_curriculum_rises_linearly_then_holds() -> None:
    config = StageConfig(steps=100, batch=4, mask_ratio_max=0.95, mask_warmup_fraction=0.8)
    assert mask_bound(0, 100, config) == 0.0
    assert mask_bound(40, 100, config) == pytest.approx(0.475)
    assert mask_bound(80, 100, config) == pytest.approx(0.95)
    assert mask_bound(99, 100, config) == pytest.approx(0.95)
    assert mask_bound(50, 100, StageConfig(steps=100, batch=4)) == 0.0


def test_stage_names_are_defined_once() -> None:
    """The stages (stages.py), their order and TrainConfig's stage fields are one list of names."""
    assert STAGE_ORDER is STAGE_NAMES
    assert tuple(STAGES) == STAGE_ORDER == ("generator", "wencoder", "predictor")
    assert all(stage.name == name for name, stage in STAGES.items())
    assert STAGES["wencoder"].trainable == ("map_encoder",)  # E_W (MapEncoder), despite the stage's name
    assert tuple(TrainConfig.from_dict(TRAIN_CONFIGS["tiny"].to_dict()).stage(n).steps for n in STAGE_NAMES)


def test_loss_weights_follow_the_stage_config() -> None:
    predictor = STAGES["predictor"]
    assert loss_weights(predictor, TRAIN_CONFIGS["paper"].predictor) == {"l1": 1.0, "lpips": 1.0, "w0": 1.0}
    # the histogram loss replaces the w0 loss (Table 2 ablation)
    ablation = StageConfig(steps=1, batch=1, w0=1.0, histogram=0.5)
    assert loss_weights(predictor, ablation) == {"l1": 1.0, "histogram": 0.5}
    assert loss_weights(STAGES["generator"], TRAIN_CONFIGS["base"].generator) == {"l1": 1.0, "lpips": 0.5}
    with pytest.raises(ValueError):
        loss_weights(STAGES["wencoder"], StageConfig(steps=1, batch=1, l1=0.0))


def test_stage_one_mixes_in_identity_pairs_per_item(photos: Path) -> None:
    from recolorize.data.folders import discover_photos

    dataset = IdentityMixPairs(discover_photos(photos), 64, seed=3)
    same = []
    for epoch in range(4):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            same.append(torch.equal(item["input"], item["output"]))
    assert 3 <= sum(same) <= 15  # IDENTITY_FRACTION = 0.25 of 32 items
    dataset.set_epoch(0)
    assert [torch.equal(dataset[i]["input"], dataset[i]["output"]) for i in range(len(dataset))] == same[:8]


def test_overrides_are_typed_and_checked() -> None:
    base = TRAIN_CONFIGS["tiny"]
    changed = apply_overrides(base, {"log_every": 1, "predictor.lr": 1, "generator.betas": [0.0, 0.99]})
    assert changed.log_every == 1 and changed.predictor.lr == 1.0 and changed.generator.betas == (0.0, 0.99)
    assert changed.wencoder == base.wencoder
    for bad in ({"nonsense": 1}, {"predictor.nonsense": 1}, {"log_every": "x"}, {"generator.steps": 0}):
        with pytest.raises(UserError):
            apply_overrides(base, bad)


def test_checkpoint_round_trip_restores_optimizer_and_random_states(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.0, 0.99))
    net(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    tensors, meta = flatten_optimizer_state(optimizer.state_dict())
    assert set(tensors) == {f"optimizer.{i}.{k}" for i in (0, 1) for k in ("step", "exp_avg", "exp_avg_sq")}
    restored = unflatten_optimizer_state(tensors, meta)
    fresh = torch.optim.Adam(net.parameters(), lr=5.0)
    fresh.load_state_dict(restored)
    assert fresh.param_groups[0]["lr"] == 1e-3 and fresh.param_groups[0]["betas"] == (0.0, 0.99)
    assert torch.equal(
        fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )

    mask = torch.Generator().manual_seed(7)
    state = capture_rng(mask)
    expected = (torch.rand(3), torch.rand(2, generator=mask), float(__import__("numpy").random.rand()))
    torch.manual_seed(123)
    mask.manual_seed(123)
    restore_rng(state, mask)
    again = (torch.rand(3), torch.rand(2, generator=mask), float(__import__("numpy").random.rand()))
    assert (
        torch.equal(expected[0], again[0]) and torch.equal(expected[1], again[1]) and expected[2] == again[2]
    )

    from recolorize.config import get_config
    from recolorize.training import Checkpoint

    path = tmp_path / "checkpoint.safetensors"
    checkpoint = Checkpoint(
        stage="predictor",
        step=5,
        model_config=get_config("tiny"),
        train_config=TRAIN_CONFIGS["tiny"],
        model_state=dict(net.state_dict()),
        optimizer_state=optimizer.state_dict(),
        rng=[state],
        data={"epoch": 1, "position": 1, "world_size": 1, "batch": 4},
    )
    save_checkpoint(path, checkpoint)
    assert read_checkpoint_info(path)["step"] == 5
    loaded = load_checkpoint(path)
    assert loaded.stage == "predictor" and loaded.train_config == TRAIN_CONFIGS["tiny"]
    assert torch.equal(loaded.model_state["weight"], net.weight.detach())
    assert loaded.rng == [state] and loaded.optimizer_state["param_groups"][0]["betas"] == (0.0, 0.99)


# --- (a) the three stages learn, end to end through the CLI; export -------------------------------------
def _mean(rows: list[dict[str, str]], key: str) -> float:
    return statistics.fmean(float(r[key]) for r in rows)


def test_all_stages_learn_then_export(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each stage fits a fixed set of crops: the data stay at epoch 0, so the loss curve shows the
    optimisation (the right networks trained, gradients through the frozen ones) rather than the sampling
    noise, which at this size and step count hides the slow learning on ever-new colourings."""
    monkeypatch.setattr(PhotoDataset, "set_epoch", lambda self, epoch: None)
    run = tmp_path / "run"
    start = time.perf_counter()
    settings = ["log_every=5", "sample_every=1000", "generator.steps=60", "wencoder.steps=30"]
    settings += ["predictor.steps=40"]
    args = ["--stage", "all", "--batch", str(N_PHOTOS)] + [a for s in settings for a in ("--set", s)]
    assert main(_train_args(photos, run, *args)) == 0
    rows = _rows(run)
    assert list(rows[0]) == list(METRIC_FIELDS)
    by_stage = {s: [r for r in rows if r["stage"] == s] for s in ("generator", "wencoder", "predictor")}
    assert [int(r["step"]) for r in by_stage["generator"]] == list(range(5, 61, 5))
    report = {s: (_mean(r[:3], "loss"), _mean(r[-3:], "loss")) for s, r in by_stage.items()}
    print(f"mean loss of the first and last 3 rows: {report}; {time.perf_counter() - start:.0f} s")
    assert report["generator"][1] < 0.85 * report["generator"][0]
    assert report["wencoder"][1] < 0.6 * report["wencoder"][0]
    assert report["predictor"][1] < 0.6 * report["predictor"][0]
    # the yardstick: doing nothing would not have improved (stage 1 and 3 beat it at the end)
    for stage in ("generator", "predictor"):
        assert _mean(by_stage[stage][-3:], "loss") < _mean(by_stage[stage][-3:], "loss_identity")
    # the masking curriculum rose to its bound; frozen networks did not move in stage 3
    assert float(by_stage["predictor"][-1]["mask_bound"]) == pytest.approx(0.95)
    wencoder, predictor = (RecolorModel.load(run / f"{s}.safetensors") for s in ("wencoder", "predictor"))
    for name, tensor in wencoder.trainable_state_dict().items():
        if not name.startswith("predictor."):
            assert torch.equal(tensor, predictor.trainable_state_dict()[name]), name
    assert not all(
        torch.equal(t, predictor.trainable_state_dict()[n])
        for n, t in wencoder.trainable_state_dict().items()
        if n.startswith("predictor.")
    )
    # files: config JSON beside the checkpoint, sample grids with one column per image
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["name"] == "tiny" and config["train"]["predictor"]["steps"] == 40
    with Image.open(run / "samples" / "predictor_000040.png") as grid:
        assert grid.size == (4 * 64 + 3 * 2, 4 * 64 + 3 * 2)
    with Image.open(run / "samples" / "generator_000060.png") as grid:
        assert grid.size == (3 * 64 + 2 * 2, 4 * 64 + 3 * 2)

    out = tmp_path / "export"
    assert main(["export", str(run), "-o", str(out)]) == 0
    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        assert all(
            handle.get_tensor(k).dtype == torch.float16 for k in handle.keys() if "num_batches" not in k
        )
    exported = RecolorModel.load(out / "model.safetensors")
    assert (out / "model.json").is_file()
    for name, tensor in predictor.trainable_state_dict().items():
        if tensor.is_floating_point():
            torch.testing.assert_close(exported.trainable_state_dict()[name], tensor.half().float())


# --- (b) SIGKILL mid-stage, resume: same steps, same losses ----------------------------------------------
def test_resume_after_sigkill_matches_an_uninterrupted_run(photos: Path, tmp_path: Path) -> None:
    options = [
        "--stage",
        "predictor",
        "--steps",
        "16",
        "--set",
        "log_every=1",
        "--set",
        "checkpoint_every=4",
        "--set",
        "sample_every=1000",
    ]
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "recolorize", *_train_args(photos, killed, *options)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    checkpoint = killed / "checkpoint.safetensors"
    deadline = time.monotonic() + 240
    step = 0
    while process.poll() is None and time.monotonic() < deadline:
        if checkpoint.is_file() and (step := read_checkpoint_info(checkpoint)["step"]) >= 8:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert 8 <= step < 16, "the run must be killed mid-stage"
    logged_before = [int(r["step"]) for r in _rows(killed)]
    assert max(logged_before) >= step

    assert main(_train_args(photos, killed, *options, "--resume")) == 0
    straight = tmp_path / "straight"
    assert main(_train_args(photos, straight, *options)) == 0

    resumed_rows, straight_rows = _rows(killed), _rows(straight)
    assert [int(r["step"]) for r in resumed_rows] == list(range(1, 17))  # no step lost or repeated
    assert [int(r["step"]) for r in straight_rows] == list(range(1, 17))
    next_step = resumed_rows[step]  # the first step taken after the resume
    assert int(next_step["step"]) == step + 1
    for key in ("loss", "l1", "w0", "mask_bound", "mask_ratio"):
        assert next_step[key] == straight_rows[step][key], key
    assert [r["loss"] for r in resumed_rows] == [r["loss"] for r in straight_rows]
    resumed = load_checkpoint(checkpoint)
    assert resumed.step == 16
    for name, tensor in load_checkpoint(straight / "checkpoint.safetensors").model_state.items():
        assert torch.equal(tensor, resumed.model_state[name]), name


# --- (c) two processes under torchrun: identical weights -------------------------------------------------
def test_torchrun_two_processes_end_with_identical_weights(photos: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "recolorize.training",
        "--config",
        "tiny",
        "--data",
        str(photos),
        "--run-dir",
        str(run),
        "--stage",
        "all",
        "--steps",
        "2",
        "--batch",
        "4",
        "--device",
        "cpu",
        "--set",
        "log_every=1",
        "--rank-digests",
    ]
    env = _env()
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    digests = [(run / f"digest_rank{r}.txt").read_text().split() for r in (0, 1)]
    assert digests[0][:2] == ["predictor", "2"]
    assert digests[0] == digests[1]
    assert [r["stage"] for r in _rows(run)] == [
        "generator",
        "generator",
        "wencoder",
        "wencoder",
        "predictor",
        "predictor",
    ]
    assert load_checkpoint(run / "checkpoint.safetensors").data["world_size"] == 2
    assert (
        sum("stage predictor finished" in line for line in result.stderr.splitlines()) == 1
    )  # rank 0 speaks


# --- (d) bad files and empty folders ------------------------------------------------------------------
def test_unreadable_files_are_skipped_with_one_warning(
    photos: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for image in sorted((photos / "images").iterdir())[:4]:
        (folder / image.name).symlink_to(image.resolve())
    (folder / "broken.jpg").write_text("this is not a JPEG")
    good = next((photos / "images").iterdir()).resolve().read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    with caplog.at_level(logging.WARNING):
        code = main(
            _train_args(folder, tmp_path / "run", "--stage", "wencoder", "--steps", "1", "--batch", "2")
        )
    assert code == 0
    for name in ("broken.jpg", "truncated.jpg"):
        assert sum(name in record.getMessage() for record in caplog.records) == 1, name
    assert load_checkpoint(tmp_path / "run" / "checkpoint.safetensors").step == 1


def test_empty_folder_is_one_error_line_and_exit_code_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "recolorize", *_train_args(empty, tmp_path / "run")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recolorize: error:") and str(empty) in lines[0], lines


def test_run_folder_rules_resume_and_init(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    assert main(_train_args(photos, run, "--stage", "wencoder", "--steps", "1", "--batch", "2")) == 0
    assert main(_train_args(photos, run, "--stage", "wencoder", "--steps", "1")) == 2  # would overwrite
    assert "--resume" in capsys.readouterr().err
    assert main(_train_args(photos, tmp_path / "other", "--resume")) == 2  # nothing to resume
    # a finished stage continues with --resume and more steps; a later stage starts from its weights
    assert main(_train_args(photos, run, "--stage", "wencoder", "--steps", "2", "--resume")) == 0
    assert [r["step"] for r in _rows(run)] == ["1", "2"]
    # --init: a new run from existing weights, config taken from them; a --config the weights do not fit is
    # refused (one that they fit is a warm start: tests/test_correspondence_prior.py)
    weights = run / "wencoder.safetensors"
    init_args = ["train", "--data", str(photos), "--init", str(weights), "--stage", "predictor"]
    assert main([*init_args, "--run", str(tmp_path / "init"), "--steps", "1", "--batch", "2"]) == 0
    before = RecolorModel.load(weights).trainable_state_dict()
    after = RecolorModel.load(tmp_path / "init" / "predictor.safetensors").trainable_state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if not k.startswith("predictor."))
    assert main([*init_args, "--run", str(tmp_path / "bad"), "--config", "base"]) == 2
    assert "do not fit config base" in capsys.readouterr().err


def test_non_finite_loss_skips_the_step(photos: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    from recolorize.training import stages

    calls = {"n": 0}
    real_l1 = stages.LOSS_TERMS["l1"]

    def l1_with_a_nan(outputs, model, lpips):
        calls["n"] += 1
        value = real_l1(outputs, model, lpips)
        return value * float("nan") if calls["n"] == 2 else value

    monkeypatch.setitem(stages.LOSS_TERMS, "l1", l1_with_a_nan)
    run = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        args = ["--stage", "wencoder", "--steps", "3", "--batch", "2", "--set", "log_every=1"]
        assert main(_train_args(photos, run, *args)) == 0
    rows = _rows(run)
    assert [r["skipped"] for r in rows] == ["0", "1", "0"]
    assert any("not finite" in r.getMessage() for r in caplog.records)
    weights = RecolorModel.load(run / "wencoder.safetensors").trainable_state_dict()
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


def test_ema_weights_end_the_stage(photos: Path, tmp_path: Path) -> None:
    args = ["--stage", "wencoder", "--steps", "3", "--batch", "2"]
    assert main(_train_args(photos, tmp_path / "ema", *args, "--set", "ema_decay=0.5")) == 0
    assert main(_train_args(photos, tmp_path / "plain", *args)) == 0
    ema = load_checkpoint(tmp_path / "ema" / "checkpoint.safetensors")
    plain = load_checkpoint(tmp_path / "plain" / "checkpoint.safetensors")
    assert plain.ema_state is None and ema.ema_state is not None
    assert set(ema.ema_state) == {k for k in ema.model_state if k.startswith("map_encoder.")}
    for key, value in ema.ema_state.items():  # the averaged weights are the stage's result
        assert torch.equal(value, ema.model_state[key]), key
    floats = [k for k, v in ema.ema_state.items() if v.is_floating_point()]
    assert any(not torch.equal(ema.ema_state[k], plain.model_state[k]) for k in floats)
    stage_weights = RecolorModel.load(tmp_path / "ema" / "wencoder.safetensors").trainable_state_dict()
    assert all(torch.equal(stage_weights[k], ema.ema_state[k]) for k in floats)


# --- the GPU script, on the CPU ----------------------------------------------------------------------
def test_gpu_train_script_runs_on_the_cpu(photos: Path, tmp_path: Path) -> None:
    env = _env()
    env.update(
        DEVICE="cpu",
        CONFIG="tiny",
        STEPS="2",
        BATCH="2",
        DATA=str(photos),
        RUN=str(tmp_path / "gpu_run"),
        PYTHON=sys.executable,
    )
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_train.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if "images/s" in line]
    assert [line.split()[0] for line in lines] == ["generator", "wencoder", "predictor"], result.stdout
    assert (tmp_path / "gpu_run" / "predictor.safetensors").is_file()


def test_metrics_file_with_other_columns_is_kept_not_dropped(tmp_path: Path) -> None:
    from recolorize.training.run_folder import MetricsLog

    path = tmp_path / "metrics.csv"
    path.write_text("step,stage,old_column\n10,generator,0.5\n")
    MetricsLog(path, enabled=True).keep_until("wencoder", 0)
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("metrics.columns-")]
    assert len(kept) == 1 and "10,generator,0.5" in kept[0].read_text()
    assert path.read_text().startswith("step,stage,loss")
