"""The contract every CLI shares: exit statuses, and outputs checked before any work starts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from vgan.cli import handler_kept, json_text, run_cli, writable_file, writable_folder
from vgan.errors import BadInputError, DataError, VganError


def test_exit_statuses(capsys):
    def raises(error):
        def main(argv):
            raise error
        return main

    assert run_cli(lambda argv: None, [], "t") == 0
    assert run_cli(raises(DataError("x.tif: missing")), [], "t") == 2
    assert run_cli(raises(VganError("diverged")), [], "t") == 1
    assert run_cli(raises(KeyboardInterrupt()), [], "t") == 130
    assert capsys.readouterr().err.splitlines() == ["t: error: x.tif: missing", "t: failed: diverged", "t: interrupted"]


def terminated(argv):
    """A command a scheduler stops (Slurm's scancel, Kubernetes deleting its pod)."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    raise AssertionError("SIGTERM went unheard")


def test_sigterm_stops_a_command_as_ctrl_c_does_and_its_handler_is_put_back(capsys):
    before = signal.getsignal(signal.SIGTERM)
    assert run_cli(terminated, [], "t") == 143  # 128 + SIGTERM, as a shell reports a command SIGTERM ended
    assert signal.getsignal(signal.SIGTERM) is before
    # where SIGINT has a handler that ends the work in order (Tune's fit), SIGTERM is handed to it
    asked = []

    def fit(argv):
        with handler_kept(signal.SIGINT):
            signal.signal(signal.SIGINT, lambda signum, frame: asked.append(signum))
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
        raise KeyboardInterrupt  # as tuner.run ends a study interrupted in order

    assert run_cli(fit, [], "t") == 143 and asked == [signal.SIGINT]
    # where SIGINT is ignored (a command started in the background), SIGTERM still stops it
    with handler_kept(signal.SIGINT):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        assert run_cli(terminated, [], "t") == 143
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert capsys.readouterr().err.splitlines() == ["t: stopped by SIGTERM"] * 3


def test_a_writable_folder_is_made_and_left_as_it_was(tmp_path):
    out = writable_folder(tmp_path / "a" / "b", "--out")
    assert out.is_dir() and list(out.iterdir()) == [], "the write probe leaves nothing behind"
    (out / "kept.txt").write_text("x")
    assert writable_folder(out, "--out") == out and [p.name for p in out.iterdir()] == ["kept.txt"]


def test_a_folder_that_cannot_be_written_is_bad_input(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInputError, match="--out .*file: is a file, not a folder"):
        writable_folder(tmp_path / "file", "--out")
    with pytest.raises(BadInputError, match=r"--out .*file/sub: cannot write there \(Not a directory\)"):
        writable_folder(tmp_path / "file" / "sub", "--out")


def test_a_file_to_write_has_its_folder_made_and_one_that_cannot_be_is_bad_input(tmp_path):
    assert writable_file(tmp_path / "a" / "g.onnx", "--out") == tmp_path / "a" / "g.onnx"
    assert list((tmp_path / "a").iterdir()) == [], "the file is written later; the write probe leaves nothing"
    with pytest.raises(BadInputError, match="--out .*/a: is a folder; give the name of a file to write"):
        writable_file(tmp_path / "a", "--out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInputError, match=r"--out .*/file: is a file, not a folder"):
        writable_file(tmp_path / "file" / "g.onnx", "--out")
    assert (tmp_path / "file").read_text() == "x"



@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="Linux's /proc: a place where no folder can be made")
def test_a_folder_where_none_can_be_made_is_bad_input():
    with pytest.raises(BadInputError, match=r"--storage /proc/vgan-out: cannot write there \("):
        writable_folder(Path("/proc/vgan-out"), "--storage")


@pytest.mark.parametrize("code", [0, 2, 130])
def test_a_program_ended_by_exit_program_keeps_its_status_and_finishes_what_exit_must(tmp_path, code):
    """exit_program leaves the heap to the OS (no final garbage collection): the exit status, the atexit
    handlers (MLflow's and Ray's shutdowns, temporary folders' removal) and logging's flush at exit still
    happen; only finalizers of objects caught in reference cycles do not, which the commands leave nothing to."""
    import subprocess
    import sys

    script = ("import atexit, logging, pathlib, sys, tempfile\n"
              "from vgan.cli import exit_program\n"
              f"out = pathlib.Path({str(tmp_path)!r})\n"
              "atexit.register((out / 'atexit').write_text, 'ran')\n"
              "logging.basicConfig(filename=out / 'log.txt', level=logging.INFO)\n"
              "logging.info('the last line')\n"
              "held = tempfile.TemporaryDirectory(dir=out)\n"
              "(pathlib.Path(held.name) / 'f').write_text('x')\n"
              f"exit_program({code})\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert (tmp_path / "atexit").read_text() == "ran"
    assert "the last line" in (tmp_path / "log.txt").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atexit", "log.txt"]  # the temporary folder went


@pytest.mark.parametrize("module, option, argv", [
    ("tuner.run", "--space", ["--space", ""]),
    ("tuner.run", "--storage", ["--space", "search_spaces/smoke.yaml", "--storage", ""]),
    ("tuner.replay", "--study-db", ["--space", "search_spaces/smoke.yaml", "--name", "n", "--study-db", " "]),
    ("tuner.predict", "--model", ["--model", "", "--input", "maps", "--out", "o"]),
    ("vgan.predict", "--input", ["--checkpoint", "best.pt", "--input", "photos", "", "--out", "o"]),
    ("vgan.evaluate", "--out", ["--checkpoint", "best.pt", "--out", ""]),
    ("vgan.train", "--config", ["--config", ""]),
    ("vgan.prepare", "--out", ["--images", "CHASEDB1", "--out", "", "--test", "8"]),
    ("vgan.compare", "--json", ["eval/a", "eval/b", "--json", ""]),
    ("vgan.export", "--out", ["--checkpoint", "best.pt", "--out", ""]),
    ("tuner.export", "--model", ["--model", "", "--out", "g.onnx"]),
])
def test_an_empty_path_is_refused_not_read_as_the_working_directory(tmp_path, monkeypatch, capsys, module, option,
                                                                     argv):
    """`--storage "$STORAGE"` with the variable unset: Path("") is the working directory, where a study's folders
    went (and `--input ""` took its images, `--config ""` trained on the defaults); each command exits 2 naming the
    option, and writes nothing."""
    import importlib

    monkeypatch.chdir(tmp_path)
    try:
        code = importlib.import_module(module).main(argv)
    except SystemExit as e:  # tuner.run and tuner.replay read their arguments before run_cli
        code = e.code
    assert code == 2
    assert f"argument {option}: empty (an unset shell variable?): give a path or URI" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_reader_gone_stops_a_command_as_sigpipe_stops_a_unix_tool(tmp_path):
    """`python -m vgan.compare A B | head -1`, or a pager quit: the print that met the closed pipe raised, a traceback
    and exit 1 (or 120, met in the interpreter's flush at exit). Now one line and SIGPIPE's status, 141."""
    paired = REPO / "benchmarks" / "results" / "paired"
    proc = subprocess.Popen([sys.executable, "-m", "vgan.compare", str(paired / "s3-none.json"),
                             str(paired / "s2-none.json")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # no reader from the start: its first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == "vgan.compare: stopped: the reader of its output closed the pipe\n"


def test_a_broken_pipe_that_is_not_standard_output_is_not_taken_for_it(capsys):
    def main(argv):
        raise BrokenPipeError(32, "Broken pipe")  # a socket or a child's pipe of the command's, say

    with pytest.raises(BrokenPipeError):
        run_cli(main, [], "prog")


def test_json_files_keep_a_list_of_plain_values_on_one_line():
    """V-GAN's DRIVE evaluation: its 20 x 20 pair counts a row a line (they took 400 lines), its intervals and the
    counts' ids a line each; the text reads back as the values, as do edge cases."""
    kept = json.loads((REPO / "benchmarks" / "results" / "paired" / "vgan.json").read_text())
    text = json_text(kept)
    assert json.loads(text) == kept and text.endswith("}\n")
    lines = text.splitlines()
    for row in kept["pair_counts"]["counts"]:
        assert f"      {json.dumps(row)}," in lines or f"      {json.dumps(row)}" in lines
    assert f'    "ids": {json.dumps(kept["pair_counts"]["ids"])},' in lines
    assert f'    "auc_roc": {json.dumps(kept["intervals"]["auc_roc"])},' in lines
    assert len(lines) < 300 < len(json.dumps(kept, indent=2).splitlines())
    assert '  "per_image": [' in lines and '      "id": "01_test",' in lines  # rows of records stay indented
    for value in ({}, [], {"a": []}, {"a": {}}, {"a": [{}]}, [[1, 2], [3]], {"a": None, "b": [1.5, "x", None, True]}):
        assert json.loads(json_text(value)) == value
