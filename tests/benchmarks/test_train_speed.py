"""benchmarks.train_speed runs both sides on real DRIVE files; figures are printed, not asserted as speed."""

import json

import pytest
import torch
from PIL import Image

from benchmarks.train_speed import ReferenceStyleDataset, main, pil_color_jitter
from vgan.config import DataConfig
from vgan.data import train_files
from vgan.provenance import environment_record

KEYS = {"images_per_s", "baseline_images_per_s", "speedup", "epoch_s", "val_s", "peak_mem_mb", "device"}


@pytest.mark.slow
def test_bench_writes_every_figure(drive_root, tiny_config_file, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["--data", str(drive_root), "--config", str(tiny_config_file), "--device", "cpu", "--steps", "2",
                 "--warmup", "1", "--repeats", "1", "--json", str(out)])
    assert code == 0
    figures = json.loads(out.read_text())
    assert KEYS <= set(figures)
    assert figures["speedup"] == pytest.approx(figures["images_per_s"] / figures["baseline_images_per_s"])
    assert all(figures[k] > 0 for k in KEYS - {"device"}) and figures["device"].startswith("cpu")
    assert figures["environment"] == environment_record(torch.device("cpu"))  # what they were measured on
    assert "speedup" in capsys.readouterr().out


@pytest.mark.slow
def test_pack_runs_concurrent_processes(drive_root, tiny_config_file, tmp_path):
    out = tmp_path / "pack.json"
    code = main(["--data", str(drive_root), "--config", str(tiny_config_file), "--device", "cpu", "--steps", "1",
                 "--warmup", "0", "--repeats", "1", "--pack", "1,2", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["pack"]
    assert [r["trials"] for r in rows] == [1, 2] and rows[0]["gain_vs_one"] == pytest.approx(1.0)
    assert all(r["aggregate_images_per_s"] > 0 and r["peak_mem_mb_per_trial"] > 0 for r in rows)


def test_baseline_reads_the_training_files_from_disk(drive_root):
    cfg = DataConfig(dataset="drive", root=str(drive_root), val_count=4)
    items = train_files(cfg)
    assert len(items) == 16 and all(it.image.is_file() and it.label.is_file() for it in items)
    x, y = ReferenceStyleDataset(items, 64, 1.0, True, 5)[3]
    assert x.shape == (3, 64, 64) and y.shape == (1, 64, 64)
    assert 0 <= x.min() and x.max() <= 1 and set(y.unique().tolist()) <= {0.0, 1.0}


def test_pil_jitter_keeps_size_and_mode(drive_root):
    img = Image.open(next((drive_root / "training" / "images").glob("*.tif"))).convert("RGB")
    out = pil_color_jitter(img, 1.0)
    assert out.size == img.size and out.mode == "RGB" and out.tobytes() != img.tobytes()


@pytest.mark.parametrize("argv, fragment", [
    (["--steps", "0"], "--steps must be at least 1"),
    (["--pack", "0,2"], "--pack 0,2: give counts of at least 1"),
    (["--dataset", "drive", "--data", "/nowhere"], "/nowhere: dataset root missing"),
])
def test_bad_input_exits_2(drive_root, capsys, argv, fragment):
    base = ["--data", str(drive_root), "--device", "cpu"]
    assert main(base + argv) == 2
    assert fragment in capsys.readouterr().err
