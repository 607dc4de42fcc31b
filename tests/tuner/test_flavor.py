"""The MLflow model's pt2 archive: exported once per generator shape, later weights swapped in, and
every archive computes exactly its own generator (an ensemble's: the mean of its generators')."""

import io
import zipfile

import pytest
import torch

from tuner import flavor
from vgan.models import Generator, ModelConfig, VesselSegmenter
from vgan.scale import recorded_fov


def generator(seed: int, **shape) -> Generator:
    torch.manual_seed(seed)
    g = Generator(ModelConfig(**{"base_width": 4, "depth": 2, **shape}))
    with torch.no_grad():  # trained-looking batch-norm statistics, not the initial 0 / 1
        for name, buf in g.named_buffers():
            if "running" in name:
                buf.uniform_(0.5, 1.5)
    return g.eval()


@pytest.mark.parametrize("shape", [{}, {"base_width": 6, "depth": 3}])
def test_each_archive_computes_its_own_generator(tmp_path, shape):
    x = torch.rand(2, 3, 45, 61)
    for seed in (1, 2):  # the first is exported and saved, the second copies it with its weights
        g = generator(seed, **shape)
        path = tmp_path / f"{seed}.pt2"
        flavor.save_program(g, path)
        loaded = torch.export.load(str(path)).module()
        torch.testing.assert_close(loaded(x), VesselSegmenter(g).eval()(x), rtol=0, atol=0)
        assert loaded(torch.rand(1, 3, 20, 33)).shape == (1, 1, 20, 33)  # still any size
        y = torch.rand(1, 3, 24, 32)  # multiples of 2**depth: padded by a whole 2**depth too
        torch.testing.assert_close(loaded(y), VesselSegmenter(g).eval()(y), rtol=0, atol=0)


def test_the_exported_sizes_are_multiples_of_the_input_sizes_symbols():
    """No Mod() in the exported graph's sizes: with the padding written as m - h % m every size below it was a
    nested sympy expression, which torch.export.load parses one by one (export 6 s, load 4.5 s for the smoke
    generator, where they take ~1 s now: benchmarks.model_save)."""
    program = flavor.export(generator(9, depth=3))
    sizes = {str(d) for node in program.graph.nodes if isinstance(node.meta.get("val"), torch.Tensor)
             for d in (*node.meta["val"].shape, *node.meta["val"].stride()) if isinstance(d, torch.SymInt)}
    assert sizes and not [s for s in sizes if "Mod" in s], sorted(sizes, key=len)[-3:]


def test_a_swapped_archive_differs_from_its_template_in_weight_records_only(tmp_path):
    flavor.save_program(generator(4, base_width=5), tmp_path / "a.pt2")
    flavor.save_program(generator(5, base_width=5), tmp_path / "b.pt2")
    a, b = (zipfile.ZipFile(tmp_path / f"{n}.pt2") for n in "ab")
    assert a.namelist() == b.namelist()
    changed = {n for n in a.namelist() if a.read(n) != b.read(n)}
    assert changed and all(n.startswith("archive/data/weights/weight_") for n in changed)


def test_a_save_during_the_warm_up_waits_for_its_export(tmp_path, monkeypatch):
    exports = []
    real = flavor.export
    monkeypatch.setattr(flavor, "export", lambda g: exports.append(g) or real(g))
    warming = flavor.warm(generator(7, base_width=7))  # a shape no other test exports
    g = generator(8, base_width=7)
    flavor.save_program(g, tmp_path / "m.pt2")
    warming.join()
    assert len(exports) == 1, "the shape is exported once"
    x = torch.rand(1, 3, 37, 29)
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    torch.testing.assert_close(loaded(x), VesselSegmenter(g).eval()(x), rtol=0, atol=0)


def test_an_archive_of_another_layout_is_saved_anew(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("archive/other.json", "{}")
    assert not flavor._write_with_weights(buffer.getvalue(), generator(6).state_dict(), tmp_path / "x.pt2")
    assert not (tmp_path / "x.pt2").exists()


def test_an_ensemble_archive_computes_the_mean_of_its_generators(tmp_path, monkeypatch):
    exports = []
    real = flavor.export
    monkeypatch.setattr(flavor, "export", lambda gs: exports.append(gs) or real(gs))
    x = torch.rand(2, 3, 45, 61)
    for seed in (10, 20):  # the second ensemble of these shapes copies the first's archive with its weights
        gs = [generator(seed, base_width=6), generator(seed + 1, base_width=6, depth=3)]
        for g in gs:
            g.set_fov_diameter(96.0)
        flavor.save_program(gs, tmp_path / f"{seed}.pt2")
        loaded = torch.export.load(str(tmp_path / f"{seed}.pt2")).module()
        with torch.no_grad():
            want = (VesselSegmenter(gs[0])(x) + VesselSegmenter(gs[1])(x)) / 2
        torch.testing.assert_close(loaded(x), want, rtol=0, atol=1e-7)
        assert loaded(torch.rand(1, 3, 20, 33)).shape == (1, 1, 20, 33)  # still any size
        y = torch.rand(1, 3, 24, 32)  # multiples of both 2**depth: each pads a whole 2**depth
        with torch.no_grad():
            want = (VesselSegmenter(gs[0])(y) + VesselSegmenter(gs[1])(y)) / 2
        torch.testing.assert_close(loaded(y), want, rtol=0, atol=1e-7)
        assert recorded_fov(loaded) == 96.0
    assert len(exports) == 1, "an ensemble's shape is exported once, too"
    one = flavor.segmenter([generator(30)])
    assert isinstance(one, VesselSegmenter), "an ensemble of one is the generator's own module"


def test_a_load_during_an_export_waits_for_it(tmp_path):
    """torch.export.load fails while another thread exports (torch 2.13): load_program waits instead. Without
    the wait this test failed 2 of 3 runs here."""
    from mlflow.models import Model

    g = generator(40, base_width=9)
    flavor.save_model(str(tmp_path / "m"), Model(), g)
    x = torch.rand(1, 3, 37, 29)
    warming = flavor.warm(generator(41, base_width=11))  # a shape no other test exports: an export begins
    loaded = [flavor.load_program(str(tmp_path / "m")) for _ in range(3)]
    warming.join()
    for program in loaded:
        torch.testing.assert_close(program(x), VesselSegmenter(g).eval()(x), rtol=0, atol=0)


def test_a_process_that_exits_during_the_warm_up_export_exits_cleanly():
    """A study that fails in its first seconds exits while the warm-up export runs: the interpreter waits for it.
    As a daemon thread it aborted the process (SIGABRT, exit 134) in 2 of 2 runs here."""
    import subprocess
    import sys

    script = ("import sys\nfrom tuner import flavor\nfrom vgan.models import Generator, ModelConfig\n"
              "flavor.warm(Generator(ModelConfig()))\nsys.exit(3)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
