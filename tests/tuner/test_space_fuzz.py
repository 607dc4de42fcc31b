"""Any space file gives a space or one clean bad-input error (exit 2), never a traceback."""

import contextlib
import copy
import dataclasses
import io
import math
import tempfile
from pathlib import Path

import yaml
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner.space import MlflowSettings, Resources, TuneSettings, load_space
from vgan.cli import run_cli
from vgan.config import config_keys

SMOKE = yaml.safe_load((REPO / "search_spaces" / "smoke.yaml").read_text())
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["loguniform", "int", "categorical", "wgan-gp", "1e-3"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))


def outcome(text: str) -> int:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "space.yaml"
        path.write_text(text)
        # run_cli turns bad input into exit 2; anything else escapes and fails the test
        return run_cli(lambda argv: load_space(path), [], "fuzz")


@FUZZ
@given(st.text(max_size=200))
def test_any_text(text):
    assert outcome(text) in (0, 2)


@FUZZ
@given(values)
def test_any_yaml_structure(tree):
    assert outcome(yaml.safe_dump(tree)) in (0, 2)


@FUZZ
@given(st.data())
def test_the_smoke_space_with_one_value_replaced(data):
    tree = copy.deepcopy(SMOKE)
    where = data.draw(st.sampled_from([p for p in paths(tree) if p]))
    node = tree
    for key in where[:-1]:
        node = node[key]
    if data.draw(st.booleans()):
        node[where[-1]] = data.draw(values)
    else:
        del node[where[-1]]
    assert outcome(yaml.safe_dump(tree)) in (0, 2)


EXTREMES = [-10**6, -1075, -1, 0, 1, 14285, 10**6, 1e308, -1e308, math.inf, -math.inf, math.nan, 0.5, True, "x",
            None, [], {}]


def test_every_key_at_the_extremes():
    """Each trainer key and each tune/resources/mlflow setting set to each extreme value in turn: a space
    or exit 2, never a traceback (the random draws above once found model.depth -1075, this walks them all)."""
    settings_keys = {"tune": TuneSettings, "resources": Resources, "mlflow": MlflowSettings}
    keys = [tuple(k.split(".")) for k in config_keys()] + \
        [(section, f.name) for section, cls in settings_keys.items() for f in dataclasses.fields(cls)]
    crashed = []
    for key in keys:
        for value in EXTREMES:
            tree = copy.deepcopy(SMOKE)
            node = tree
            for part in key[:-1]:
                node = node.setdefault(part, {})
            node[key[-1]] = value
            with contextlib.redirect_stderr(io.StringIO()):
                try:
                    outcome(yaml.safe_dump(tree))
                except Exception as e:  # noqa: BLE001 - collected, to name every one that crashed
                    crashed.append(f"{'.'.join(key)} = {value!r}: {e!r}")
    assert not crashed, "\n".join(crashed)
