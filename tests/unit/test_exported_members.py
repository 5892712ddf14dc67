"""The public API is what `tuner.__all__` says, and each name resolves."""

import tuner


def test_all_names_resolve():
    for name in tuner.__all__:
        assert getattr(tuner, name) is not None, name


def test_dir_lists_the_public_names_before_they_are_imported():
    """What tab completion reads (a fresh interpreter: nothing imported lazily yet)."""
    import subprocess
    import sys

    code = "import tuner; print(' '.join(n for n in tuner.__all__ if n not in dir(tuner)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_importing_tuner_does_not_import_ray_or_mlflow():
    import subprocess
    import sys

    code = "import sys, tuner; print('ray' in sys.modules, 'mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_no_submodule_shadows_a_public_function():
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(tuner.__path__):
        importlib.import_module(f"tuner.{info.name}")
    for name in ("tune", "resume", "report", "load_state"):
        assert callable(getattr(tuner, name)), name
