import pytest


@pytest.fixture
def study_dir(tmp_path, monkeypatch):
    """Each test runs in its own working directory (results, mlflow.db land there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
