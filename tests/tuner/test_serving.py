"""Using the champion: loading it as PyTorch and pyfunc users do, `tuner.predict`, and `mlflow models serve`
answering a real DRIVE image with the local prediction."""

import json
import time
from urllib.error import HTTPError

import numpy as np
import pytest
import torch
from conftest import TINY
from dicoms import write_dicom
from loopback import invoke, model_server
from mlflow.exceptions import MlflowException
from models import trial_with_best
from PIL import Image

from tuner.predict import main as predict_main
from tuner.predict import pinned
from tuner.registry import Gate, register_candidate
from tuner.tracking import log_best_model, use_tracking_uri
from vgan.config import config_from_dict
from vgan.data import load_train_val
from vgan.images import estimate_fov, read_image
from vgan.scale import fov_diameter, predict_at_scale, recorded_fov, smallest_side
from vgan.tta import with_tta
from vgan.visualize import to_uint16

NAME = "vgan-generator-test"


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """A tiny trained generator, logged and registered as a study does it: (store uri, champion URI)."""
    tmp = tmp_path_factory.mktemp("champion")
    cfg, uri, study, run_id = trial_with_best(tmp)
    model_uri = log_best_model(uri, run_id, tmp / "best", load_train_val(cfg.data)[1], cfg, "t1 completed")
    assert register_candidate(uri, NAME, model_uri, run_id, cfg, {}, Gate(), "s").promoted
    return uri, f"models:/{NAME}@champion"


@pytest.fixture(scope="module")
def drive_image(drive_root) -> np.ndarray:
    return read_image(drive_root / "test" / "images" / "01_test.tif")  # (584, 565, 3) uint8


def test_the_pytorch_model_takes_any_size_and_refuses_8_bit_values(champion, drive_image):
    import mlflow.pytorch

    uri, model = champion
    with use_tracking_uri(uri):
        m = mlflow.pytorch.load_model(model).to("cpu")
    x = torch.from_numpy(drive_image).permute(2, 0, 1)[None].float() / 255
    probs = m(x)
    assert probs.shape == (1, 1, 584, 565) and 0 <= probs.min() and probs.max() <= 1
    probs.numpy()  # no gradient attached: docs/predict.md's example runs as written
    assert m(torch.rand(2, 3, 37, 64)).shape == (2, 1, 37, 64)
    with pytest.raises(RuntimeError, match=r"takes RGB values in \[0, 1\]: divide 8-bit images by 255"):
        m(x * 255)


def test_pyfunc_takes_images_as_users_have_them(champion, drive_image):
    import mlflow.pyfunc

    uri, model = champion
    with use_tracking_uri(uri):
        pf = mlflow.pyfunc.load_model(model)
    chw = (drive_image.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    want = pf.predict(chw)
    assert want.shape == (1, 1, 584, 565) and want.dtype == np.float32
    for given in (drive_image, drive_image / 255.0, chw[0].astype(np.float64), chw[0]):  # HWC u8/f64, CHW
        np.testing.assert_allclose(pf.predict(given), want, atol=1e-6)
    with pytest.raises(Exception) as e:
        pf.predict(drive_image.astype(np.float64))  # 0..255 floats: no guess
    assert "divide 8-bit values by 255" in str(e.value) and len(str(e.value)) < 300
    # the raw model is a torch module that takes eval() and to(), unlike the exported program itself
    raw = pf.get_raw_model().eval().to("cpu")
    assert isinstance(raw, torch.nn.Module)
    np.testing.assert_allclose(raw(torch.from_numpy(chw)).numpy(), want, atol=1e-6)
    with pytest.raises(RuntimeError, match="cannot train"):
        raw.train()


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def png_map(text: str) -> np.ndarray:
    import base64
    import io

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def test_pyfunc_takes_image_files_and_answers_pngs(champion, drive_root, drive_image, tmp_path):
    """Base64 image files (as a web client sends a photograph: the TIFF as shipped, a PNG, a phone's JPEG stored
    sideways, a data URL), each segmented at its own size as its pixels are; `output: png` answers each map as
    the base64 of the 16-bit PNG vgan.predict writes."""
    import mlflow.pyfunc

    uri, model = champion
    with use_tracking_uri(uri):
        pf = mlflow.pyfunc.load_model(model)
    tif = (drive_root / "test" / "images" / "01_test.tif").read_bytes()
    Image.fromarray(drive_image).save(tmp_path / "01.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter anticlockwise, shown turned back
    Image.fromarray(np.ascontiguousarray(np.rot90(drive_image))).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    phone = read_image(tmp_path / "phone.jpg")
    assert phone.shape == drive_image.shape
    want = pf.predict(drive_image)
    for sent in (b64(tif), b64((tmp_path / "01.png").read_bytes()), [b64(tif)], np.array([b64(tif)]),
                 "data:image/png;base64," + b64((tmp_path / "01.png").read_bytes()), [tif]):
        np.testing.assert_array_equal(pf.predict(sent), want)
    np.testing.assert_array_equal(pf.predict(b64((tmp_path / "phone.jpg").read_bytes())), pf.predict(phone))
    dicom = write_dicom(tmp_path / "IM0001", drive_image, "j2k").read_bytes()  # as a camera sends it to an archive
    np.testing.assert_array_equal(pf.predict(b64(dicom)), want)
    small = np.ascontiguousarray(drive_image[100:400, 50:350])
    Image.fromarray(small).save(tmp_path / "small.png")
    two = [b64(tif), b64((tmp_path / "small.png").read_bytes())]
    maps = pf.predict(two, params={"output": "png"})
    assert isinstance(maps, list) and len(maps) == 2
    np.testing.assert_array_equal(png_map(maps[0]), to_uint16(want[0, 0]))
    np.testing.assert_array_equal(png_map(maps[1]), to_uint16(pf.predict(small)[0, 0]))
    # a refusal is MLflow's bad request (a server answers it with HTTP 400 and the reason: below)
    with pytest.raises(MlflowException, match=r'images of 2 sizes make no one array: .* \{"output": "png"\}') as e:
        pf.predict(two)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE" and e.value.get_http_status_code() == 400
    with pytest.raises(MlflowException, match="image 1 of 2: a string that is not base64"):
        pf.predict([two[0], "not an image!"])
    with pytest.raises(MlflowException, match=r"image 0 of 1: unreadable or truncated image"):
        pf.predict([b64(tif[:2000])])
    with pytest.raises(MlflowException, match="params output 'jpeg': give one of array, png"):
        pf.predict(drive_image, params={"output": "jpeg"})


def test_pyfunc_segments_at_the_models_scale_unless_told(champion, drive_image):
    """The tiny champion learnt ~44-pixel FOVs: a DRIVE photograph (~540) is shrunk to that by default, as
    tuner.predict does; params {"scale": ..., "tta": ...} reach predict through the model's params schema."""
    import mlflow.pyfunc
    import mlflow.pytorch

    uri, model = champion
    with use_tracking_uri(uri):
        pf = mlflow.pyfunc.load_model(model)
        graph = mlflow.pytorch.load_model(model)
        specs = mlflow.models.get_model_info(model).signature.params.params
    assert [(spec.name, spec.default) for spec in specs] == [("scale", "auto"), ("tta", "none"), ("output", "array")]
    x = torch.from_numpy(drive_image.copy()).permute(2, 0, 1)[None].float() / 255
    factor = recorded_fov(graph) / fov_diameter(estimate_fov(drive_image / 255.0))
    assert 0.05 < factor < 0.1
    np.testing.assert_allclose(pf.predict(drive_image), predict_at_scale(graph, x, factor).numpy(), atol=1e-6)
    np.testing.assert_allclose(pf.predict(drive_image, params={"scale": "1"}), graph(x).numpy(), atol=1e-6)
    np.testing.assert_allclose(pf.predict(drive_image, params={"scale": "0.5"}),
                               predict_at_scale(graph, x, 0.5).numpy(), atol=1e-6)
    # the exported graph takes every view, transposed ones included (565 x 584)
    np.testing.assert_allclose(pf.predict(drive_image, params={"scale": "1", "tta": "dihedral"}),
                               with_tta(graph, "dihedral")(x).numpy(), atol=1e-6)
    with pytest.raises(MlflowException, match="params tta 'mirror': give one of none, hflip, flips, dihedral"):
        pf.predict(drive_image, params={"tta": "mirror"})


def test_loading_needs_no_pickle(champion, monkeypatch):
    import mlflow.pyfunc
    import mlflow.pytorch

    uri, model = champion
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with use_tracking_uri(uri):
        assert mlflow.pytorch.load_model(model)(torch.rand(1, 3, 20, 30)).shape == (1, 1, 20, 30)
        noise = np.random.rand(20, 30, 3)  # no photograph: taken at the size it is sent
        assert mlflow.pyfunc.load_model(model).predict(noise, params={"scale": "1"}).shape == (1, 1, 20, 30)


def test_tuner_predict_writes_the_champions_maps(champion, drive_root, clinic, tmp_path, capsys):
    import mlflow.pytorch

    uri, model = champion
    images = drive_root / "test" / "images"
    argv = ["--model", model, "--tracking-uri", uri,
            "--input", str(images / "01_test.tif"), str(images / "02_test.tif"),
            "--out", str(tmp_path / "out"), "--masks", str(drive_root / "test" / "mask")]
    assert predict_main(argv) == 0
    said = capsys.readouterr().out
    with use_tracking_uri(uri):
        m = mlflow.pytorch.load_model(model)
    # the registered model carries the FOV diameter its generator was trained at, and each photograph is
    # segmented at that scale
    train = load_train_val(config_from_dict(TINY).data)[0]
    assert recorded_fov(m) == np.median([fov_diameter(k) for k in train.masks])
    with use_tracking_uri(uri):
        assert mlflow.models.get_model_info(model).metadata["trained_fov_diameter_px"] == recorded_fov(m)
    assert "tuner.predict: 2 image(s) segmented" in said and f"model's FOV of {recorded_fov(m):.0f} px: 2" in said
    # the alias read once: the batch says which version made it, on the console and in its page
    assert f"tuner.predict: {model} is version 1: it makes every map of this batch" in said
    assert f"<title>Vessel maps by {model} (version 1)</title>" in (tmp_path / "out" / "index.html").read_text()
    x = torch.from_numpy(read_image(images / "02_test.tif")).permute(2, 0, 1)[None].float() / 255
    fov = np.asarray(Image.open(drive_root / "test" / "mask" / "02_test_mask.gif")) > 0
    prob = predict_at_scale(m, x, recorded_fov(m) / fov_diameter(fov)).numpy()[0, 0]
    want = to_uint16(prob * fov)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "probabilities" / "02_test.png")), want)
    # --tta: the registered graph's mirrored views, averaged at the model's scale
    assert predict_main(argv[:-4] + ["--out", str(tmp_path / "tta"), "--masks", argv[-1], "--tta", "hflip"]) == 0
    assert "each map the mean of 2 mirrored views (--tta hflip)" in capsys.readouterr().out
    prob = predict_at_scale(with_tta(m, "hflip"), x, recorded_fov(m) / fov_diameter(fov)).numpy()[0, 0]
    want = to_uint16(prob * fov)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "tta" / "probabilities" / "02_test.png")), want)
    # several models: the mean of their maps (here one model by two URIs, so its own map again)
    argv = ["--model", model, f"models:/{NAME}/1", *argv[2:-4], "--out", str(tmp_path / "two"), "--masks", argv[-1]]
    assert predict_main(argv) == 0
    assert "each map the mean of 2 generators' maps" in capsys.readouterr().out
    for name in ("01_test.png", "02_test.png"):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "two" / "probabilities" / name)),
                                      np.asarray(Image.open(tmp_path / "out" / "probabilities" / name)))
    # a folder per patient: the maps in the same subfolders, a row each in report.csv
    assert predict_main(["--model", model, "--tracking-uri", uri, "--input", str(clinic), "--recursive",
                         "--out", str(tmp_path / "clinic")]) == 0
    assert "4 image(s) segmented" in capsys.readouterr().out
    assert (tmp_path / "clinic" / "probabilities" / "p02" / "visit2" / "OD.png").is_file()
    assert (tmp_path / "clinic" / "report.csv").read_text().count("\n") == 5
    # continued by the same registered weights under another name (its version): the maps stand
    assert predict_main(["--model", f"models:/{NAME}/1", "--tracking-uri", uri, "--input", str(clinic),
                         "--recursive", "--out", str(tmp_path / "clinic"), "--continue"]) == 0
    assert "0 image(s) segmented" in (said := capsys.readouterr().out) and "4 kept as an earlier run" in said


def test_tuner_export_writes_the_champion_as_onnx_that_runs_as_the_registered_model(champion, drive_root,
                                                                                     drive_image, tmp_path, capsys):
    """The ONNX file's map of a DRIVE photograph is the registered program's; its metadata names the version the
    alias named, the FOV the model was trained at, and the digest tuner.predict's report.csv gives its batches."""
    import csv

    import mlflow.pytorch
    import onnxruntime as ort

    from tuner.export import main as export_main
    from vgan.export import read_metadata

    uri, model = champion
    out = tmp_path / "champion.onnx"
    assert export_main(["--model", model, "--tracking-uri", uri, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"tuner.export: {model} is version 1" in said and f"wrote {out}" in said
    with use_tracking_uri(uri):
        m = mlflow.pytorch.load_model(model)
    x = torch.from_numpy(drive_image).permute(2, 0, 1)[None].float() / 255
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(["probability"], {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, m(x).numpy(), atol=1e-5)
    assert got.shape == (1, 1, 584, 565)
    meta = read_metadata(out)
    assert meta["source"] == f"models:/{NAME}/1" and float(meta["trained_fov_diameter_px"]) == recorded_fov(m)
    assert predict_main(["--model", model, "--tracking-uri", uri, "--input",
                         str(drive_root / "test" / "images" / "01_test.tif"), "--out", str(tmp_path / "maps")]) == 0
    with open(tmp_path / "maps" / "report.csv", newline="") as f:
        assert [row["model"] for row in csv.DictReader(f)] == [meta["weights_digest"]]
    # quantized to 8 bits on a training photograph: its own digest, its drift from the registered program said
    assert export_main(["--model", model, "--tracking-uri", uri, "--out", str(tmp_path / "int8.onnx"), "--quantize",
                        "int8", "--calibration", str(drive_root / "training" / "images" / "21_training.tif")]) == 0
    int8 = read_metadata(tmp_path / "int8.onnx")
    assert int8["source"] == meta["source"] and int8["weights_digest"] != meta["weights_digest"]
    assert int8["quantized"].startswith("int8: convolutions") and "mean |difference|" in int8["int8_drift"]
    capsys.readouterr()
    # an unknown version: bad input naming it, no file
    assert export_main(["--model", f"models:/{NAME}/7", "--tracking-uri", uri, "--out", str(tmp_path / "x.onnx")]) == 2
    assert f"--model models:/{NAME}/7: cannot load it from" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_an_alias_is_pinned_to_the_version_it_names_at_the_start(champion):
    from mlflow.tracking import MlflowClient

    uri, model = champion
    assert pinned(uri, model) == (f"models:/{NAME}/1", "1")
    client = MlflowClient(uri, uri)
    client.set_registered_model_alias(NAME, "clinic", "1")
    try:
        assert pinned(uri, f"models:/{NAME}@clinic") == (f"models:/{NAME}/1", "1")
    finally:
        client.delete_registered_model_alias(NAME, "clinic")
    # anything else is loaded as given; an alias naming nothing is for the load to refuse, with the URI given
    for given in (f"models:/{NAME}/1", f"models:/{NAME}@clinic", "models:/nobody@champion", "runs:/abc/model",
                  "mlartifacts/1/models/m-1/artifacts"):
        assert pinned(uri, given) == (given, None)


def test_a_batch_logged_is_a_run_naming_the_version_that_made_it(champion, drive_root, tmp_path, capsys,
                                                                   monkeypatch):
    """--log: a run in the predictions experiment with the version, the weights, the arguments, the counts and
    the report; an image that fails is counted (the run still FINISHED: the batch ran), a batch interrupted ends
    KILLED, bad input records nothing."""
    import csv
    import json

    from mlflow.tracking import MlflowClient

    import tuner.predict
    from tuner.batches import EXPERIMENT

    uri, model = champion
    (tmp_path / "broken.png").write_bytes(b"not a PNG")
    argv = ["--model", model, "--tracking-uri", uri, "--log", "--input",
            str(drive_root / "test" / "images" / "01_test.tif"), str(tmp_path / "broken.png"), "--out",
            str(tmp_path / "out")]
    assert predict_main(argv) == 2  # the broken file: named, the other segmented
    said = capsys.readouterr().out
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id], "tags.kind = 'predictions'")
    assert len(runs) == 1 and f"experiment {EXPERIMENT}, run {runs[0].info.run_id}" in said
    # the link it prints opens the batches' table: the runs of batches, newest first, with what made them
    exp = client.get_experiment_by_name(EXPERIMENT)
    view = json.loads(exp.tags["mlflow.sharedViewState.batches"])
    assert f"/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning&viewStateShareKey=batches" in said
    assert view["searchFilter"] == "tags.kind = 'predictions'" and "tags.`model_versions`" in view["selectedColumns"]
    assert [r.info.run_id for r in client.search_runs([exp.experiment_id], view["searchFilter"])] == [
        runs[0].info.run_id]
    run = runs[0]
    with open(tmp_path / "out" / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert run.info.status == "FINISHED" and run.info.run_name.startswith(f"out: v1 {NAME} 20")
    assert run.data.tags["model_versions"] == f"{NAME}/1" and run.data.tags["weights"] == rows[0]["model"]
    assert run.data.tags["out"] == str(tmp_path / "out")
    assert run.data.params["model"] == f"{model} (version 1)" and run.data.params["threshold"] == "0.5"
    assert run.data.params["continue"] == "False" and run.data.params["input"].endswith("broken.png")
    assert run.data.metrics["images_segmented"] == 1 and run.data.metrics["images_failed"] == 1
    assert run.data.metrics["mean_vessel_fraction"] == pytest.approx(float(rows[0]["vessel_fraction"]), abs=1e-4)
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["index.html", "report.csv"]
    # every batch a version made, by the search the README gives
    assert [r.info.run_id for r in client.search_runs([run.info.experiment_id],
                                                      f"tags.model_versions LIKE '%{NAME}/1%'")] == [run.info.run_id]
    # another experiment named; a batch interrupted: KILLED, with the rows it had
    def interrupted(*args, **kwargs):
        (tmp_path / "stopped" / "report.csv").write_text("name,input\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(tuner.predict, "segment_images", interrupted)
    assert predict_main(argv[:5] + ["clinic-a", *argv[5:-1], str(tmp_path / "stopped")]) == 130
    (run,) = client.search_runs([client.get_experiment_by_name("clinic-a").experiment_id])
    assert run.info.status == "KILLED" and [a.path for a in client.list_artifacts(run.info.run_id)] == ["report.csv"]
    # bad input: nothing recorded
    assert predict_main(argv + ["--masks", str(tmp_path / "no-masks")]) == 2
    assert "no-masks: masks folder missing" in capsys.readouterr().err
    assert len(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])) == 1


KILLED_AFTER_ONE_IMAGE = """
import os, signal, sys
import tuner.predict as predict
segment = predict.segment_images
def first_then_killed(members, sources, *args):
    segment(members, sources[:1], *args)  # its row is in report.csv
    os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer does: no handler runs
predict.segment_images = first_then_killed
sys.exit(predict.main(sys.argv[1:]))
"""


def test_a_batch_killed_outright_is_ended_by_the_next_into_its_folder(champion, drive_root, tmp_path, capsys,
                                                                       monkeypatch):
    """A real tuner.predict --log SIGKILLed after its first image leaves its run RUNNING; the next batch into that
    folder on this machine ends it KILLED with the row it made, and says so. Runs whose process lives, or that
    another machine made, are left as they are."""
    import csv
    import os
    import socket
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    import tuner.batches
    from tuner.batches import BatchRun

    experiment = "killed-batches"  # this test's: the other tests count the default one's runs

    uri, model = champion
    out = tmp_path / "maps"
    images = [str(drive_root / "test" / "images" / f"{i:02d}_test.tif") for i in (1, 2)]
    argv = ["--model", model, "--tracking-uri", uri, "--log", experiment, "--input", *images, "--out", str(out)]
    # runs of this folder whose process lives, or that another machine made: left as they are by every batch
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        for made_by in ({"host": socket.gethostname(), "pid": str(sleeper.pid)}, {"host": "elsewhere", "pid": "1"}):
            monkeypatch.setattr(tuner.batches, "this_process", lambda made_by=made_by: made_by)
            BatchRun.start(uri, experiment, out, [], None, {})
        monkeypatch.undo()
        child = subprocess.run([sys.executable, "-c", KILLED_AFTER_ONE_IMAGE, *argv], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
        assert child.returncode == -9, child.stderr
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(experiment).experiment_id
        (dead,) = [r for r in client.search_runs([exp]) if r.data.tags["out"] == str(out) and "weights" in r.data.tags]
        assert dead.info.status == "RUNNING" and dead.data.tags["host"] == socket.gethostname()
        with open(out / "report.csv", newline="") as f:
            assert len(list(csv.DictReader(f))) == 1
        # a batch into another folder leaves it too
        assert predict_main([*argv[:-1], str(tmp_path / "other")]) == 0
        assert client.get_run(dead.info.run_id).info.status == "RUNNING"
        capsys.readouterr()

        assert predict_main([*argv, "--continue"]) == 0
        said = capsys.readouterr().out
        assert f"run {dead.info.run_id} of an earlier batch into {out} was left running by a process that is gone" \
            in said
        ended = client.get_run(dead.info.run_id)
        assert ended.info.status == "KILLED"
        assert sorted(a.path for a in client.list_artifacts(dead.info.run_id)) == ["index.html", "report.csv"]
        with open(client.download_artifacts(dead.info.run_id, "report.csv", str(tmp_path)), newline="") as f:
            assert [r["input"] for r in csv.DictReader(f)] == images[:1]
        runs = {r.info.run_id: r for r in client.search_runs([exp]) if r.data.tags["out"] == str(out)}
        assert sorted(r.info.status for r in runs.values()) == ["FINISHED", "KILLED", "RUNNING", "RUNNING"]
        (new,) = [r for r in runs.values() if r.info.status == "FINISHED"]
        assert new.data.metrics["images_kept"] == 1 and new.data.metrics["images_segmented"] == 1
        assert new.data.tags["pid"] == str(os.getpid())
    finally:
        sleeper.kill()


def test_an_image_under_the_programs_smallest_side_is_named_and_the_others_are_segmented(champion, drive_image,
                                                                                          tmp_path, capsys):
    """The exported program takes sides of 2**depth pixels and more (torch.export's guard refuses fewer, an
    AssertionError naming no image): a strip of a photograph 3 pixels high is refused by name, by tuner.predict
    (which writes the others' maps) and by the pyfunc, as an image whose FOV no camera gives is."""
    import mlflow.pyfunc
    import mlflow.pytorch

    uri, model = champion
    with use_tracking_uri(uri):
        program = mlflow.pytorch.load_model(model)
        pf = mlflow.pyfunc.load_model(model)
    side = 2 ** TINY["model"]["depth"]
    assert smallest_side(program) == side and program(torch.rand(1, 3, side, 9)).shape == (1, 1, side, 9)
    with use_tracking_uri(uri):
        assert mlflow.models.get_model_info(model).metadata["smallest_side_px"] == side
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(drive_image).save(photos / "photo.png")
    Image.fromarray(drive_image[300 : 300 + side - 1]).save(photos / "strip.png")
    argv = ["--model", model, "--tracking-uri", uri, "--input", str(photos), "--out", str(tmp_path / "out")]
    assert predict_main([*argv, "--scale", "1"]) == 2
    said = capsys.readouterr()
    assert f"1 of 2 image(s) not segmented (the others are in {tmp_path / 'out'}): {photos / 'strip.png'}: " \
           f"{side - 1} x 565 pixels is under the {side} pixels a side the model takes" in said.err, said.err
    assert "1 image(s) segmented" in said.out and (tmp_path / "out" / "probabilities" / "photo.png").is_file()
    strip = drive_image[300 : 300 + side - 1]
    for params in ({"scale": "1"}, {}):  # as it is; brought to the model's FOV (shrunk: fewer rows still)
        with pytest.raises(MlflowException, match=f"image 0 of 1: {side - 1} x 565 pixels.* under the {side} pixels"):
            pf.predict(strip, params=params)
    with pytest.raises(MlflowException, match=f"images 0-1 of 2: {side - 1} x 565 pixels is under the {side} pixels"):
        pf.predict(np.stack([strip.transpose(2, 0, 1)] * 2), params={"scale": "1"})  # (N, C, H, W)


@pytest.mark.parametrize("model, out, fragment", [
    # what the store holds is said too
    (f"models:/{NAME}@nobody", "out", f"--model models:/{NAME}@nobody: cannot load it from"),
    (f"models:/{NAME}/7", "out", f"(Model Version (name={NAME}, version=7) not found); {NAME} has version 1; "
                                 "aliases: @challenger (version 1), @champion (version 1)"),
    ("models:/no-such-model/1", "out", "--model models:/no-such-model/1: cannot load it from"),
    (f"models:/{NAME}@champion", "taken/out", "taken/out: cannot write there (Not a directory)"),
    # a store that is not there: said so, nothing made (MLflow made an empty database, then found no model)
    (f"models:/{NAME}@champion", "out", "none.db: no MLflow database there"),
    (f"models:/{NAME}@champion", "out", "--tracking-uri http://127.0.0.1:1: the MLflow tracking server is unreachable"),
])
def test_an_unknown_model_or_an_unwritable_out_exits_2(champion, drive_root, tmp_path, capsys, model, out, fragment):
    uri, _ = champion
    if "none.db" in fragment:
        uri = f"sqlite:///{tmp_path}/none.db"
    elif "127.0.0.1:1" in fragment:
        uri = "http://127.0.0.1:1"
    (tmp_path / "taken").write_text("a file where the output folder would go")
    argv = ["--model", model, "--tracking-uri", uri, "--input", str(drive_root / "test" / "images" / "01_test.tif"),
            "--out", str(tmp_path / out)]
    assert predict_main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1, err
    if "nobody" in model:
        assert err.endswith(f"(Registered model alias nobody not found.); {NAME} has version 1; aliases: "
                            "@challenger (version 1), @champion (version 1)\n"), err
    elif "no-such-model" in model:
        assert err.endswith(f"; registered there: {NAME}\n"), err
    if "tracking" in fragment or "none.db" in fragment:
        assert not (tmp_path / "out").exists() and not (tmp_path / "none.db").exists()


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_drive_image_like_the_local_model(champion, drive_image, tmp_path):
    import mlflow.pyfunc

    uri, model = champion
    with use_tracking_uri(uri):
        local = mlflow.pyfunc.load_model(model)
    chw = (drive_image.transpose(2, 0, 1)[None] / 255.0).astype(np.float32)
    with model_server(tmp_path / "serve", model, uri) as url:
        t0 = time.perf_counter()
        answer = np.asarray(invoke(url, {"inputs": chw.tolist()})["predictions"], dtype=np.float32)
        seconds = time.perf_counter() - t0
        np.testing.assert_allclose(answer, local.predict(chw), atol=1e-6)
        # an 8-bit (H, W, C) image as a user's PIL array: the server converts as the local model does
        as_8bit = np.asarray(invoke(url, {"inputs": drive_image.tolist()})["predictions"], dtype=np.float32)
        np.testing.assert_allclose(as_8bit, local.predict(drive_image), atol=1e-6)
        # the request's params reach the model: at the size sent, not at the model's scale
        as_sent = np.asarray(invoke(url, {"inputs": chw.tolist(), "params": {"scale": "1"}})["predictions"],
                             dtype=np.float32)
        np.testing.assert_allclose(as_sent, local.predict(chw, params={"scale": "1"}), atol=1e-6)
        assert np.abs(as_sent - answer).max() > 1e-3
        mirrored = np.asarray(invoke(url, {"inputs": chw.tolist(), "params": {"tta": "hflip"}})["predictions"],
                              dtype=np.float32)
        np.testing.assert_allclose(mirrored, local.predict(chw, params={"tta": "hflip"}), atol=1e-6)
        assert np.abs(mirrored - answer).max() > 1e-3
        # the photograph's file in, its map's PNG out: what a web client sends and shows
        Image.fromarray(drive_image).save(tmp_path / "01.png")
        (png,) = invoke(url, {"inputs": [b64((tmp_path / "01.png").read_bytes())], "params": {"output": "png"}}
                        )["predictions"]
        np.testing.assert_array_equal(png_map(png), png_map(local.predict(drive_image, params={"output": "png"})[0]))
        # a photograph refused: 400 and the reason, not "Verify that the serialized input Dataframe is compatible"
        # with the reason at the end of a traceback, nor the megabytes of base64 sent before it
        Image.fromarray(np.ascontiguousarray(drive_image[:, :2])).save(tmp_path / "strip.png")
        for request in ({"inputs": [b64((tmp_path / "strip.png").read_bytes())], "params": {"scale": "1"}},
                        {"inputs": [b64((tmp_path / "01.png").read_bytes())], "params": {"scale": "9"}}):
            with pytest.raises(HTTPError) as e:
                invoke(url, request)
            answer = json.loads(e.value.read())
            assert e.value.code == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE", answer
            assert answer["message"] in ("image 0 of 1: 584 x 2 pixels is under the 4 pixels a side the model takes "
                                         "(its U-Net halves an image 2 times): no fundus photograph is this small",
                                         "params scale 9: a factor must be above 0 and at most 4"), answer
    print(f"\nmlflow models serve: one 584x565 DRIVE image answered in {seconds:.2f} s (JSON request, tiny model)")
