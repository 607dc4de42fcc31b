"""What `vgan.predict` says of a batch: `report.csv`, a row per image, and `index.html`, the batch at a glance.

The report is written row by row as images are done, so a batch stopped half way keeps the rows of what it
did. The index is a page with no server and no script: each photograph's overlay as a thumbnail, failures
first with their reason, then the lowest vessel fractions, where the photographs out of focus and
under-exposed gather (`benchmarks.qc`).
"""

from __future__ import annotations

import csv
import hashlib
import html
import time
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

REPORT, INDEX = "report.csv", "index.html"
# The folders of maps under --out, each mirroring the input folders; an overlay is a picture to look at (JPEG), a
# thumbnail its small copy for the page (a camera's 3504x2336 overlay is 2 MB: hundreds would drag a browser down)
PROBABILITIES = "probabilities"  # the maps' subfolder (vgan.evaluate --predictions reads a batch's from there)
OUTPUTS = (PROBABILITIES, "binary", "fov", "overlay", "thumbnails")
PICTURES = ("overlay", "thumbnails")


def output_file(sub: str, name: str) -> str:
    """Where image `name`'s map of kind `sub` (one of OUTPUTS) lies under --out, as a relative POSIX path."""
    return f"{sub}/{name}.{'jpg' if sub in PICTURES else 'png'}"


# input_digest, model and settings: what each map was made from and by (the photograph's bytes; the weights; threshold,
# scale, views, masks), so a map on file is known for what it is, and a batch continued (--continue) takes only the maps
# made from the same bytes by the same model and settings
REPORT_KEYS = ("name", "input", "input_digest", "status", "height", "width", "fov", "fov_diameter_px", "factors",
               "vessel_fraction", "converted", "error", "model", "settings")
SEGMENTED, FAILED = "segmented", "failed"
THUMBNAIL_PX = 240  # shown; stored twice as wide, for high-density screens

STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f4f4f4}img{display:block;background:#000}.failed{color:#b00020}.num{text-align:right}
.note{color:#555;max-width:60em}"""


class BatchReport:
    """`out/report.csv`, a row per image as it is done; `close` writes `out/index.html` from the rows."""

    def __init__(self, out: Path, title: str):
        self.out, self.title, self.rows = out, title, []
        (out / INDEX).unlink(missing_ok=True)  # an earlier batch's page beside this batch's rows would mislead
        self._file = open(out / REPORT, "w", newline="")
        self._writer = csv.DictWriter(self._file, REPORT_KEYS)
        self._writer.writeheader()

    def add(self, row: dict) -> None:
        self._writer.writerow(row)
        self._file.flush()
        self.rows.append(row)

    def close(self) -> None:
        self._file.close()
        write_index(self.out, self.rows, self.title)

    def __enter__(self) -> BatchReport:
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is None:
            self.close()
        else:  # stopped: the rows so far stay in report.csv; no index of half a batch
            self._file.close()


def weights_digest(models: Sequence[object]) -> str | None:
    """A digest of the models' weights (in order): the same for the same weights whatever file, URI or alias
    they were loaded from. A model that is no `torch.nn.Module` is told by the `weights_digest` it carries (an ONNX
    file's, `vgan.export.OnnxSegmenter`: one alone gives the digest of the checkpoint it was exported from); None
    where one carries none (nothing to tell it by)."""
    import torch

    carried = [getattr(model, "weights_digest", None) for model in models]
    if len(models) == 1 and isinstance(carried[0], str):
        return carried[0]
    digest = hashlib.sha256()
    for model, recorded in zip(models, carried, strict=True):
        if not isinstance(model, torch.nn.Module):
            if not isinstance(recorded, str):
                return None
            digest.update(recorded.encode())
            continue
        for key, value in sorted(model.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()[:16]}"


def content_digest(data: bytes) -> str:
    """A digest of a file's bytes, as report.csv's input_digest gives it."""
    return f"sha256:{hashlib.sha256(data).hexdigest()[:16]}"


def earlier_rows(out: Path) -> dict[str, dict]:
    """The rows of the report already in `out`, by name; none where there is none or it is another's (other
    columns: a report of an earlier version, or no report of this tool)."""
    try:
        with open(out / REPORT, newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != REPORT_KEYS:
                return {}
            return {row["name"]: row for row in reader}
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}


def still_good(row: dict | None, out: Path, source_path: Path, input_digest: str, model: str | None,
               settings: str) -> bool:
    """Whether an earlier run's row stands for this run: segmented from the same file with the same bytes (a
    photograph replaced by another keeps no map, whatever its time stamp: copies and archives keep old ones), by
    the same weights with the same settings, and its maps all still there."""
    if row is None or model is None or row["status"] != SEGMENTED:
        return False
    if (row["input"], row["input_digest"], row["model"], row["settings"]) != (str(source_path), input_digest, model,
                                                                               settings):
        return False
    return all((out / output_file(sub, row["name"])).is_file() for sub in OUTPUTS if sub != "fov" or
               row["fov"] == "estimated")


def ordered(rows: list[dict]) -> list[dict]:
    """Failures first (in the order met), then the lowest vessel fractions: what to look at first."""
    failed = [r for r in rows if r["status"] == FAILED]
    done = sorted((r for r in rows if r["status"] != FAILED), key=lambda r: float(r["vessel_fraction"]))
    return failed + done


def write_index(out: Path, rows: list[dict], title: str) -> Path:
    failed = sum(r["status"] == FAILED for r in rows)
    lines = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{len(rows) - failed} photograph(s) segmented, {failed} failed; '
        f"{time.strftime('%Y-%m-%d %H:%M')}. Failures come first, then the lowest vessel fractions: photographs out "
        "of focus or under-exposed have their vessels missed and gather there, as do maps not to trust; a pointer "
        "for a look, not a verdict. Each thumbnail is the photograph "
        "with its vessel map in green (as strong as the vessel probability) and, in yellow, the rim of the field of "
        f'view the map was made in. The same rows are in <a href="{REPORT}">{REPORT}</a>.</p>',
        *(f'<p class="note">Made by weights {html.escape(m)}; {html.escape(st)}.</p>'
          for m, st in dict.fromkeys((r.get("model") or "", r.get("settings") or "") for r in rows if r.get("model"))),
        "<table><tr><th>photograph and map</th><th>name</th><th>vessel fraction</th><th>size</th>"
        "<th>field of view</th><th>scale</th><th>converted</th><th>maps</th></tr>",
    ]
    for r in ordered(rows):
        name = html.escape(r["name"])
        if r["status"] == FAILED:
            lines.append(f'<tr><td></td><td>{name}<br><small>{html.escape(r["input"])}</small></td>'
                         f'<td colspan="6" class="failed">not segmented: {html.escape(r["error"])}</td></tr>')
            continue
        link = {sub: quote(output_file(sub, r["name"])) for sub in ("overlay", "thumbnails", "probabilities", "binary")}
        fov = "estimated" if r["fov"] == "estimated" else f'mask <small>{html.escape(r["fov"])}</small>'
        lines.append(
            f'<tr><td><a href="{link["overlay"]}"><img src="{link["thumbnails"]}" width="{THUMBNAIL_PX}" '
            f'loading="lazy" alt="{name}"></a></td><td>{name}<br><small>{html.escape(r["input"])}</small></td>'
            f'<td class="num">{float(r["vessel_fraction"]):.1%}</td><td>{r["width"]}x{r["height"]}</td>'
            f'<td>{fov}, {r["fov_diameter_px"]} px across</td><td>x{html.escape(r["factors"])}</td>'
            f'<td>{html.escape(r["converted"])}</td><td><a href="{link["probabilities"]}">probabilities</a> '
            f'<a href="{link["binary"]}">binary</a></td></tr>')
    lines.append("</table></body></html>")
    path = out / INDEX
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
