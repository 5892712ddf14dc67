"""One set of pinned versions: constraints.txt is what the Makefile, CI and every node of
cluster/aws-spot.yaml install, it agrees with pyproject.toml's ranges, and it is what this
environment has; and what `ray job submit --working-dir .` uploads of the project."""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from tuner.ray_compat import BUILT_FOR

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pins() -> dict[str, str]:
    pins = {}
    with open(os.path.join(ROOT, "constraints.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==")
                pins[canonicalize_name(name)] = version
    return pins


def _project() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def test_every_line_of_the_lock_is_an_exact_pin():
    with open(os.path.join(ROOT, "constraints.txt"), encoding="utf-8") as f:
        lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", ln) for ln in lines)


def test_the_lock_pins_the_ray_the_boundary_was_built_for():
    assert _pins()["ray"] == BUILT_FOR


def test_pyproject_ranges_admit_the_pinned_versions_and_have_upper_bounds():
    project, pins = _project(), _pins()
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        requirements += [Requirement(r) for r in extra]
    for req in requirements:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name]), f"{req} does not admit {pins[name]}"
    for req in (Requirement(r) for r in project["dependencies"]):  # no open-ended range
        assert any(s.operator in ("~=", "<", "<=", "==") for s in req.specifier), str(req)


def test_this_environment_has_exactly_the_pinned_versions():
    pins = _pins()
    for name in ("ray", "optuna", "mlflow", "boto3", "pyyaml", "pandas", "moto", "pytest"):
        assert metadata.version(name) == pins[name], name


def test_the_makefile_installs_from_the_lock():
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        installs = [ln for ln in f if "pip install" in ln and "-e '.[" in ln]
    assert installs and all("-c constraints.txt" in ln for ln in installs)


def test_every_cluster_node_installs_this_checkout_from_the_same_lock():
    with open(os.path.join(ROOT, "cluster", "aws-spot.yaml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    remote = next(r for r, local in config["file_mounts"].items() if local == ".")  # the checkout
    assert ".gitignore" in config["rsync_filter"]  # not the local .venv
    installs = [c for c in config["setup_commands"] if "pip install" in c and "spot-tuner" in c]
    assert installs, "no setup command installs spot-tuner"
    for command in installs:
        assert f"-c {remote}/constraints.txt" in command
    # worker and head commands are shared: setup_commands run on every node
    assert "worker_setup_commands" not in config and "head_setup_commands" not in config


def test_the_cluster_image_python_is_checked_against_requires_python():
    minimum = SpecifierSet(_project()["requires-python"])
    with open(os.path.join(ROOT, "cluster", "aws-spot.yaml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    guard = next(c for c in config["setup_commands"] if "sys.version_info" in c)
    major, minor = re.search(r"sys.version_info < \((\d+), (\d+)\)", guard).groups()
    floor = Version(f"{major}.{minor}")
    assert floor in minimum
    assert Version(f"{major}.{int(minor) - 1}") not in minimum


def test_a_job_submitted_from_the_project_uploads_it_without_the_benchmark_records(tmp_path):
    """Ray's own packaging of ``--working-dir .`` (real, to a local zip): the example and the
    package go, benchmarks/results (~25 MiB of recorded studies, .rayignore) does not."""
    import zipfile

    from ray._private import ray_constants
    from ray._private.runtime_env.packaging import create_package

    package = tmp_path / "job.zip"
    create_package(ROOT, package, include_gitignore=True,  # as upload_working_dir_if_needed
                   excludes=ray_constants.get_runtime_env_default_excludes())
    names = zipfile.ZipFile(package).namelist()
    assert "examples/digits_mlp.py" in names and "tuner/api.py" in names
    assert not [n for n in names if n.startswith("benchmarks/results/")]
    assert package.stat().st_size < 8 * 2**20, sorted(names)
