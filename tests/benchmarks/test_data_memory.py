"""benchmarks.data_memory reports what a training process holds of a dataset: DRIVE at 5 bytes a pixel in its
splits (uint8 photographs, bool labels and masks), a two-camera pool with the pixels its padding adds."""

import json

from conftest import REPO, two_camera_dataset

from benchmarks.data_memory import MB, main


def test_drive_is_held_at_five_bytes_a_pixel(drive_root, tmp_path, capsys):
    out = tmp_path / "memory.json"
    assert main(["--config", str(REPO / "configs" / "drive.yaml"), "--data", str(drive_root), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    pixels = 584 * 565
    assert r["images"] == 20 and r["sizes"] == [[584, 565]] and r["megapixels"] == r["held_megapixels"]
    assert r["dtypes"] == {"images": "torch.uint8", "labels": "torch.bool", "masks": "torch.bool",
                           "stacked": "torch.uint8"}
    assert r["splits_mib"] == 20 * pixels * 5 / MB and r["stacked_mib"] == 16 * pixels * 5 / MB  # 4 go to val
    assert all(m["peak_mib"] >= m["rss_mib"] > 0 for m in r["stages"].values())
    assert "20 images of 584x565 (6.6 Mpx)" in capsys.readouterr().out


def test_a_two_camera_pool_says_what_its_padding_adds(drive_root, stare_root, tmp_path, capsys):
    root = two_camera_dataset(drive_root, stare_root, tmp_path / "own", {"training": (5, 3)})
    out = tmp_path / "memory.json"
    assert main(["--config", str(REPO / "configs" / "folder.yaml"), "--data", str(root), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    own = (5 * 584 * 565 + 3 * 605 * 700) / 1e6
    assert r["sizes"] == [[584, 565], [605, 700]] and r["size"] == [605, 700]
    assert abs(r["megapixels"] - own) < 1e-9 and abs(r["held_megapixels"] - 8 * 605 * 700 / 1e6) < 1e-9
    assert "8 images of 584x565, 605x700 (2.9 Mpx, held padded to 605x700: 3.4 Mpx)" in capsys.readouterr().out
