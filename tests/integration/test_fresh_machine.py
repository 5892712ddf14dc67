"""A machine that never ran Ray joins a token-authenticated cluster (what `tuner cluster up`
and `ray.init()` start) without the token: one line saying where to put it, no traceback.

Nothing is faked: a real local Ray cluster; the driver is a real `tuner run` with an empty
HOME (so no ~/.ray/auth_token) and no RAY_AUTH_MODE.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers import user_env


def test_joining_a_token_cluster_without_its_token_says_where_to_put_it(ray_cluster, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "train.py").write_text("import tuner\n\ndef train(config):\n"
                                       "    tuner.report({'acc': config['q']})\n")
    (tmp_path / "exp.yaml").write_text(textwrap.dedent(f"""
        trainable: train:train
        space: {{q: {{type: float, low: 0.1, high: 1.0}}}}
        metric: acc
        num_samples: 1
        scheduler: {{max_t: 1}}
        ray_address: {ray_cluster.address!r}
    """))
    out = subprocess.run([sys.executable, "-m", "tuner.cli", "run", "exp.yaml"], cwd=tmp_path,
                         env=user_env(HOME=str(home)), capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the Ray cluster at ")
    assert str(home / ".ray" / "auth_token") in last and "ray get-auth-token" in last
