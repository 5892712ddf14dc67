"""Search spaces: the YAML/dict shape, its conversion to Optuna, and every mistake's message.

No Ray here: spaces are exercised against a real in-memory Optuna study.
"""

from __future__ import annotations

import glob
import os

import optuna
import pytest

from tuner.errors import ConfigError
from tuner.search_space import CategoricalParam, FloatParam, IntParam, load_space

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
optuna.logging.set_verbosity(optuna.logging.WARNING)


def sample(space, n=30, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        constants = space.suggest(trial)
        out.append({**trial.params, **constants})
        study.tell(trial, 0.0)
    return out


def test_every_kind_of_parameter_is_parsed():
    space = load_space({
        "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
        "width": {"type": "int", "low": 16, "high": 256, "log": True},
        "layers": {"type": "int", "low": 1, "high": 4, "step": 1},
        "act": {"type": "categorical", "choices": ["relu", "tanh"]},
        "epochs": 10,
    })
    by_name = {p.name: p for p in space.params}
    assert by_name["lr"] == FloatParam("lr", 1e-4, 0.1, log=True)
    assert by_name["dropout"].step == 0.1
    assert isinstance(by_name["width"], IntParam) and by_name["width"].log
    assert by_name["act"] == CategoricalParam("act", ("relu", "tanh"))
    assert space.constants == {"epochs": 10}


def test_suggestions_respect_bounds_log_step_and_constants():
    space = load_space({
        "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
        "width": {"type": "int", "low": 16, "high": 256, "step": 16},
        "epochs": 10,
    })
    for config in sample(space):
        assert 1e-4 <= config["lr"] <= 0.1
        assert round(config["dropout"] * 10) == pytest.approx(config["dropout"] * 10)
        assert config["width"] % 16 == 0 and 16 <= config["width"] <= 256
        assert config["epochs"] == 10


def test_conditional_parameter_is_suggested_only_when_its_condition_holds():
    space = load_space({
        "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"solver": "sgd"}},
        "solver": {"type": "categorical", "choices": ["sgd", "adam", "rmsprop"]},
        "eps": {"type": "float", "low": 1e-8, "high": 1e-6, "log": True,
                "when": {"solver": ["adam", "rmsprop"]}},
    })
    assert space.params[0].name == "solver"  # parents come first
    configs = sample(space, n=60)
    assert {c["solver"] for c in configs} == {"sgd", "adam", "rmsprop"}
    for c in configs:
        assert ("momentum" in c) == (c["solver"] == "sgd")
        assert ("eps" in c) == (c["solver"] != "sgd")


def test_a_condition_chain_activates_in_order():
    space = load_space({
        "c": {"type": "int", "low": 1, "high": 3, "when": {"b": "on"}},
        "b": {"type": "categorical", "choices": ["on", "off"], "when": {"a": True}},
        "a": {"type": "categorical", "choices": [True, False]},
    })
    assert [p.name for p in space.params] == ["a", "b", "c"]
    for c in sample(space, n=40):
        assert ("b" in c) == c["a"]
        assert ("c" in c) == (c.get("b") == "on")


def test_a_condition_on_an_int_parameter_holds_for_the_values_it_names():
    space = load_space({
        "layers": {"type": "int", "low": 1, "high": 3},
        "width2": {"type": "int", "low": 8, "high": 64, "when": {"layers": [2, 3]}},
        "n": {"type": "int", "low": 5, "high": 5, "step": 10},  # a one-value range: any step
    })
    for c in sample(space, n=30):
        assert ("width2" in c) == (c["layers"] >= 2)


def test_values_at_an_end_of_their_range_are_found_in_each_parameters_own_scale():
    """Within 2% of the range: on a log scale 0.09 of 1e-4..0.1 is at the end, 0.08 is not."""
    space = load_space({
        "lr": {"type": "float", "low": 1.0e-4, "high": 0.1, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "layers": {"type": "int", "low": 1, "high": 5},
        "act": {"type": "categorical", "choices": ["relu", "tanh"]},
        "steps": 100})
    assert space.at_edge({"lr": 0.09, "dropout": 0.0, "layers": 3, "act": "relu",
                          "steps": 100}) == {"lr": "high", "dropout": "low"}
    assert space.at_edge({"lr": 0.08, "dropout": 0.011, "layers": 5}) == {"layers": "high"}
    assert space.at_edge({"lr": 1.1e-4, "dropout": 0.25}) == {"lr": "low"}
    assert space.at_edge({"layers": 2, "act": "tanh"}) == {}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "search_spaces", "*.yaml"))))
def test_shipped_spaces_load_and_sample(path):
    space = load_space(path)
    assert space.params
    assert sample(space, n=5)


def test_shipped_spaces_cover_the_common_models():
    names = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "search_spaces", "*.yaml"))}
    assert {"sgd.yaml", "mlp.yaml", "trees.yaml", "torch_net.yaml"} <= names


def test_yaml_and_dict_give_the_same_space(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("lr: {type: float, low: 1e-4, high: 0.1, log: true}\n"
                    "act: {type: categorical, choices: [relu, tanh]}\n")
    from_yaml = load_space(path)
    from_dict = load_space({"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
                            "act": {"type": "categorical", "choices": ["relu", "tanh"]}})
    assert from_yaml.params == from_dict.params
    assert load_space(from_yaml.to_dict()).params == from_yaml.params


BAD = [
    ({"lr": {"type": "float", "low": 0, "high": 1, "log": True}},
     "space: lr: log=true needs low > 0, got low=0"),
    ({"lr": {"type": "float", "low": 1, "high": 0.1}},
     "lr: needs low <= high, got low=1, high=0.1; swap them (low: 0.1, high: 1)"),
    ({"act": {"type": "categorical", "choices": []}}, "act.choices: needs a non-empty list"),
    ({"lr": {"type": "flaot", "low": 0, "high": 1}}, "(did you mean 'float'?)"),
    ({"lr": {"tpye": "float", "low": 0, "high": 1}}, "lr.tpye: unknown key (did you mean 'type'?)"),
    ({"lr": {"type": "loguniform", "low": 1e-4, "high": 1}},
     "got 'loguniform'; write it as `{type: float, low: ..., high: ..., log: true}`"),
    ({"n": {"type": "randint", "low": 1, "high": 4}}, "write it as `{type: int, low: ..., "),
    ({"lr": {"type": "float", "low": 0, "hihg": 1}}, "lr.hihg: unknown key (did you mean 'high'?)"),
    ({"lr": {"type": "float", "high": 1}}, "lr.low: is required"),
    ({"lr": {"low": 0.1, "high": 1}}, "lr.type: is required: float, int or categorical"),
    ({"n": {"type": "int", "low": 1.5, "high": 4}}, "n.low: must be a whole number"),
    ({"lr": {"type": "float", "low": 1e-3, "high": 1, "log": True, "step": 0.1}},
     "log=true cannot be combined with step"),
    ({"lr": {"type": "float", "low": 0, "high": 1, "step": -1}}, "lr.step: needs step > 0"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {"solvr": "sgd"}},
      "solver": {"type": "categorical", "choices": ["sgd"]}},
     "m.when: refers to parameter 'solvr', which is not in the space (did you mean 'solver'?)"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {"solver": "sdg"}},
      "solver": {"type": "categorical", "choices": ["sgd", "adam"]}},
     "m.when.solver: 'sdg' is not one of its choices"),
    ({"a": {"type": "categorical", "choices": [1, 2], "when": {"b": 1}},
      "b": {"type": "categorical", "choices": [1, 2], "when": {"a": 1}}}, "conditions form a cycle"),
    ({"lr": {"type": "float", "low": 0, "high": 1, "step": 2}},
     "lr.step: step=2 is larger than the range 0..1, so only low would be sampled; use a step "
     "<= 1 or widen the range"),
    ({"n": {"type": "int", "low": 1, "high": 4, "step": 5}},
     "n.step: step=5 is larger than the range 1..4"),
    ({"width": {"type": "int", "low": 8, "high": 250, "step": 16}},
     "width.high: high 250 is not low 8 plus a multiple of step 16, so Optuna would never "
     "sample above 248: use high 248 or 264"),
    ({"dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.15}},
     "dropout.high: high 0.5 is not low 0.0 plus a multiple of step 0.15, so Optuna would never "
     "sample above 0.45: use high 0.45 or 0.6"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {"lr": 0.1}},
      "lr": {"type": "float", "low": 0.01, "high": 1}},
     "m.when.lr: 'lr' is a float parameter, which almost never takes an exact value; "
     "condition on an int or categorical parameter instead"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {"layers": 5}},
      "layers": {"type": "int", "low": 1, "high": 3}},
     "m.when.layers: 5 is not a value 'layers' takes (whole numbers 1..3, step 1); pick one"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {"width": [4, 5]}},
      "width": {"type": "int", "low": 2, "high": 8, "step": 2}},
     "m.when.width: 5 is not a value 'width' takes (whole numbers 2..8, step 2)"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {"layers": "2"}},
      "layers": {"type": "int", "low": 1, "high": 3}},
     "m.when.layers: '2' is not a value 'layers' takes"),
    ({"m": {"type": "float", "low": 0, "high": 1, "when": {"solver": ["sgd", "adamw"]}},
      "solver": {"type": "categorical", "choices": ["sgd", "adam"]}},
     "m.when.solver: 'adamw' is not one of its choices ['sgd', 'adam']; pick values from the "
     "choices"),
    ({"tuner.cost": {"type": "float", "low": 0, "high": 1}}, "reserved"),
    ({}, "a space is a mapping"),
    ({"lr": [1, 2]}, "lr: expected a mapping"),
]


@pytest.mark.parametrize("spec,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_spaces_say_where_and_how_to_fix(spec, message):
    with pytest.raises(ConfigError) as info:
        load_space(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_errors_in_a_file_name_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    path = tmp_path / "mlp.yaml"
    path.write_text("lr: {type: float, low: 0, high: 1, log: true}\n")
    with pytest.raises(ConfigError, match=r"^mlp.yaml: lr: log=true needs low > 0, got low=0$"):
        load_space(path)


def test_broken_yaml_names_the_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    path = tmp_path / "broken.yaml"
    path.write_text("lr: {type: float\nx: [\n")
    with pytest.raises(ConfigError, match=r"^broken.yaml: line \d+: not valid YAML"):
        load_space(path)


def test_a_parameter_given_twice_is_refused_with_its_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    path = tmp_path / "mlp.yaml"
    path.write_text("lr: {type: float, low: 0.1, high: 1}\nwidth: {type: int, low: 8, high: 64}\n"
                    "lr: {type: float, low: 0.01, high: 1, log: true}\n")
    with pytest.raises(ConfigError, match=r"^mlp.yaml: line 3: key 'lr' is given twice in one "
                                          r"mapping \(first on line 1\); keep one of them$"):
        load_space(path)


def test_a_key_given_twice_inside_a_parameter_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a user in their project's directory
    path = tmp_path / "mlp.yaml"
    path.write_text("lr:\n  type: float\n  low: 0.1\n  high: 1\n  low: 0.2\n")
    with pytest.raises(ConfigError, match=r"^mlp.yaml: line 5: key 'low' is given twice"):
        load_space(path)
    path.write_text("lr: {type: float, low: 0.1, high: 1, low: 0.2}\n")
    with pytest.raises(ConfigError, match=r"^mlp.yaml: line 1: key 'low' is given twice in one "
                                          r"mapping \(first on line 1\)"):
        load_space(path)
