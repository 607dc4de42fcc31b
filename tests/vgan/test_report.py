"""A batch's report: rows kept as they are written, and a page whose every link reaches its file."""

import csv

import pytest
from pages import read_page

from vgan.report import INDEX, REPORT, BatchReport


def _row(name, fraction, **more):
    return {"name": name, "input": f"/photos/{name}.jpg", "status": "segmented", "height": 584, "width": 565,
            "fov": "estimated", "fov_diameter_px": 539.0, "factors": "1", "vessel_fraction": fraction,
            "converted": "", **more}


def test_the_page_shows_failures_first_then_the_lowest_fractions_and_every_link_reaches_its_file(tmp_path):
    names = ["p 01/O#D & co", "p02/OD", "p03/<b>OS"]  # a space, a hash, an ampersand, markup
    for name in names:
        for sub, ext in (("overlay", "jpg"), ("thumbnails", "jpg"), ("probabilities", "png"), ("binary", "png")):
            (tmp_path / sub / f"{name}.{ext}").parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / sub / f"{name}.{ext}").write_bytes(b"")
    with BatchReport(tmp_path, "Vessel maps by <best.pt>") as report:
        report.add(_row(names[0], 0.12))
        report.add(_row(names[1], 0.04))
        report.add({"name": "p04/OD", "input": "/photos/p04/OD.png", "status": "failed",
                    "error": "/photos/p04/OD.png: unreadable image"})
        report.add(_row(names[2], 0.09))
    page = read_page(tmp_path / INDEX)
    links = [url for _, url in page.links]
    assert [link for link in links if link != REPORT] and all((tmp_path / link).is_file() for link in links)
    text = "".join(page.text)
    assert text.index("p04/OD") < text.index("p02/OD") < text.index("p03/<b>OS") < text.index("p 01/O#D & co")
    assert "Vessel maps by <best.pt>" in text and "3 photograph(s) segmented, 1 failed" in text
    assert "not segmented: /photos/p04/OD.png: unreadable image" in text and "4.0%" in text
    with open(tmp_path / REPORT, newline="") as f:
        assert [r["name"] for r in csv.DictReader(f)] == [names[0], names[1], "p04/OD", names[2]]


def test_a_batch_stopped_half_way_keeps_its_rows_and_leaves_no_page(tmp_path):
    (tmp_path / INDEX).write_text("an earlier batch's page")
    with pytest.raises(KeyboardInterrupt), BatchReport(tmp_path, "maps") as report:
        report.add(_row("p01/OD", 0.1))
        raise KeyboardInterrupt
    with open(tmp_path / REPORT, newline="") as f:
        assert [r["name"] for r in csv.DictReader(f)] == ["p01/OD"]
    assert not (tmp_path / INDEX).exists()


def test_the_weights_digest_tells_weights_apart_not_their_files(tmp_path):
    import torch
    from models import tiny_checkpoint

    from vgan.models import VesselSegmenter
    from vgan.report import weights_digest
    from vgan.trainer import generator_from_checkpoint, load_checkpoint

    path = tiny_checkpoint(tmp_path)
    copy = tmp_path / "copy.pt"
    copy.write_bytes(path.read_bytes())
    a, b = (VesselSegmenter(generator_from_checkpoint(load_checkpoint(p), str(p), torch.device("cpu"))[0])
            for p in (path, copy))
    assert weights_digest([a]) == weights_digest([b]) and weights_digest([a]).startswith("sha256:")
    assert weights_digest([a, b]) != weights_digest([a])  # an ensemble of two is another model
    with torch.no_grad():
        next(b.parameters()).view(-1)[0] += 1e-6
    assert weights_digest([b]) != weights_digest([a])
    assert weights_digest([lambda x: x]) is None  # nothing to tell a bare function by: no map of it is kept


def test_a_report_of_other_columns_gives_no_rows_to_keep(tmp_path):
    from vgan.report import earlier_rows

    assert earlier_rows(tmp_path) == {}
    (tmp_path / REPORT).write_text("name,input,status\np01/OD,/photos/p01/OD.jpg,segmented\n")  # an earlier version's
    assert earlier_rows(tmp_path) == {}
    with BatchReport(tmp_path, "maps") as report:
        report.add(_row("p01/OD", 0.1, model="sha256:00", settings="threshold 0.5"))
    assert earlier_rows(tmp_path)["p01/OD"]["model"] == "sha256:00"
