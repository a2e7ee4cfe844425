"""Property-based fuzzing of command-line overrides (hypothesis): every override is either refused
with exactly one line that names its key, or accepted and runs.

The configs are composed once per method (Hydra's composition is slow); each example's
overrides are then applied the way Hydra applies them (``ConfigLoaderImpl._apply_overrides_to_config``)
and checked exactly as ``bench`` checks them (:func:`bench.config.overrides.check_overrides`,
:func:`bench.config.validate.validate`).
"""

from __future__ import annotations

import copy
import math
import string

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.api import compose
from bench.config.overrides import check_overrides
from bench.config.validate import user_error, validate
from bench.core.errors import ConfigError
from bench.engine.run import run

METHODS = ("gradcam", "integrated_gradients", "random")
BASE = {
    m: compose(f"method={m}", "metric=[deletion,pointing_game]", resolve=False) for m in METHODS
}
PARSER = OverridesParser.create()


def leaf_keys(node: object, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [
            k
            for key, v in node.items()
            for k in leaf_keys(v, f"{prefix}.{key}" if prefix else str(key))
        ]
    return [prefix]


KEYS = sorted(
    {k for cfg in BASE.values() for k in leaf_keys(OmegaConf.to_container(cfg, resolve=False))}
)
KEYS = [k for k in KEYS if "_target_" not in k]  # target overrides have their own tests


@st.composite
def keys(draw: st.DrawFn) -> str:
    key = draw(st.sampled_from(KEYS))
    kind = draw(st.sampled_from(["real", "real", "typo", "unknown"]))
    if kind == "typo":
        i = draw(st.integers(0, len(key) - 1))
        key = key[:i] + draw(st.sampled_from(string.ascii_lowercase)) + key[i + 1 :]
    elif kind == "unknown":
        key = draw(st.from_regex(r"[a-z]{1,8}(\.[a-z_]{1,8})?", fullmatch=True))
    return key


def text_value(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, list):
        return "[" + ",".join(text_value(x) for x in v) + "]"
    return str(v)


VALUES = st.one_of(
    st.integers(-(10**20), 10**20),
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.booleans(),
    st.none(),
    st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=8),
    st.lists(st.integers(-2, 500), max_size=4),
)


@st.composite
def overrides(draw: st.DrawFn) -> tuple[str, list[str], str]:
    method = draw(st.sampled_from(METHODS))
    argv = []
    for _ in range(draw(st.integers(1, 3))):
        prefix = draw(st.sampled_from(["", "", "", "+", "++", "~"]))
        key = draw(keys())
        argv.append(f"~{key}" if prefix == "~" else f"{prefix}{key}={text_value(draw(VALUES))}")
    return method, argv, argv[0]


def check(method: str, argv: list[str]):
    """The job config ``bench method=<method> <argv>`` would run, or the ConfigError it gets."""
    argv = check_overrides(argv)
    cfg = copy.deepcopy(BASE[method])
    try:
        ConfigLoaderImpl._apply_overrides_to_config(PARSER.parse_overrides(argv), cfg)
    except (HydraException, OmegaConfBaseException) as err:
        raise (user_error(err) or ConfigError(str(err))) from err
    validate(cfg)
    return cfg


def key_of(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides())
def test_every_override_is_accepted_or_refused_in_one_line_naming_its_key(case):
    method, argv, _ = case
    try:
        check(method, argv)
    except ConfigError as err:
        text = str(err)
        assert "\n" not in text and text, text
        named = [key_of(a) for a in argv]
        parts = [p for k in named for p in (k, k.split(".", 1)[0], k.rsplit(".", 1)[-1])]
        assert any(p in text for p in parts), (argv, text)


#: Valid values of cheap top-level keys: every example must run a job (none is skipped).
CHEAP = {
    "seed": st.integers(0, 2**31),
    "batch_size": st.integers(1, 4),
    "chunk_size": st.one_of(st.just("auto"), st.integers(1, 64)),
    "precision": st.sampled_from(["fp32", "bf16"]),
    "explain": st.sampled_from(["label", "prediction"]),
    # a word (digits alone would parse as a number, which tag refuses)
    "tag": st.from_regex(r"[a-zA-Z][a-zA-Z0-9_-]{0,7}", fullmatch=True),
    "save_maps": st.booleans(),
}


@st.composite
def cheap_overrides(draw: st.DrawFn) -> list[str]:
    keys = draw(st.lists(st.sampled_from(sorted(CHEAP)), min_size=1, max_size=2, unique=True))
    return [f"{k}={text_value(draw(CHEAP[k]))}" for k in keys]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@pytest.mark.slow
@given(cheap_overrides())
def test_accepted_overrides_run_a_tiny_job(tmp_path_factory, argv):
    check("random", argv)  # accepted: a refusal here fails the test
    argv = [*argv, "dataset.limit=1", "metric=[sparseness]"]
    cfg = compose("method=random", *argv, resolve=False)  # the real composition, then the job
    record = run(cfg, tmp_path_factory.mktemp("job"))
    assert record["status"] == "completed" and record["rows"] == 1
    assert record["config"]["seed"] == cfg.seed and record["config"]["tag"] == cfg.tag


# --- the routes by which a config could run code (bench/trust.py) --------------------------------

#: Names a ``_target_`` could be given: this project's (allowed where they fit), attributes of
#: our modules that are other packages' objects, the standard library, garbage.
NAMES = [
    "bench.methods.gradient.Gradient",
    "bench.methods.cam.GradCAM",
    "bench.metrics.faithfulness.Deletion",
    "bench.cli.callbacks.ValidateOnMultirunStart",
    "bench.results.collate.pd.read_pickle",
    "bench.engine.run.torch.load",
    "bench.engine.run.subprocess.run",
    "bench.engine.cache.np.load",
    "hydra.utils.Path.touch",
    "hydra.utils.instantiate",
    "os.system",
    "builtins.eval",
    "pathlib.Path.write_text",
    "torch.load",
]
ROUTES = [
    ("method._target_={}", "method._target_"),
    ("method=smoothgrad method.method._target_={}", "method.method._target_"),
    ("+metric.x={{_target_:{}}}", "metric.x._target_"),
    ("+hydra.callbacks.x={{_target_:{}}}", "hydra.callbacks.x._target_"),
    ("+hydra.callbacks.x._target_={}", "hydra.callbacks.x._target_"),
    ("method._target_=bench.methods.gradient.Gradient,{}", "method._target_"),
]
#: The names above that the project allows: its own method, metric and callback classes (the
#: allow-list is one set; a method class under ``metric`` passes here and fails at construction).
ALLOWED = {
    "bench.methods.gradient.Gradient",
    "bench.methods.cam.GradCAM",
    "bench.metrics.faithfulness.Deletion",
    "bench.cli.callbacks.ValidateOnMultirunStart",
}


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(ROUTES),
    st.one_of(
        st.sampled_from(NAMES),
        st.from_regex(r"(bench|methods|metrics|hydra)(\.[a-z_]{1,8}){1,3}", fullmatch=True),
    ),
)
def test_a_target_on_any_route_is_refused_in_one_line_unless_the_project_allows_it(route, name):
    """Every route by which an override sets a ``_target_`` (top level, nested method, a new
    metric node, a Hydra callback, one value of a sweep) reaches the same check: a name the
    project allows passes, anything else is one line naming the key."""
    template, key = route
    argv = template.format(name).split(" ")
    try:
        check_overrides(argv)
    except ConfigError as err:
        text = str(err)
        assert "\n" not in text and text.startswith(key), (argv, text)
        assert name not in ALLOWED, (argv, text)
        return
    assert name in ALLOWED, argv


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["deletion", "insertion", "pointing_game", "insertionn", "x"]),
                 min_size=1, max_size=3),
        min_size=2, max_size=3,
    )
)  # fmt: skip
def test_a_list_sweep_of_a_group_is_accepted_iff_every_option_exists(lists):
    arg = "metric=" + ",".join("[" + ",".join(v) + "]" for v in lists)
    valid = all(v in ("deletion", "insertion", "pointing_game") for vs in lists for v in vs)
    try:
        assert check_overrides(["-m", arg]) == ["-m", arg]
    except ConfigError as err:
        assert not valid and "\n" not in str(err) and str(err).startswith("metric="), (arg, err)
        return
    assert valid, arg


def test_the_fuzzer_reaches_both_outcomes():
    accepted = check("gradcam", ["seed=3", "metric.deletion.step=448"])
    assert accepted.seed == 3
    with pytest.raises(ConfigError, match=r"^metric.deletion.step=-1 is not valid"):
        check("gradcam", ["metric.deletion.step=-1"])
