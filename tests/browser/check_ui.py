"""The MLflow UI as a person sees it: headless Chromium follows the links tuner prints.

Usage: ``python tests/browser/check_ui.py [--study tuner_results/<name>] [--out DIR]``
(``make ui-test``). Without ``--study`` it first runs a small real study (the digits example,
6 trials, on a Ray instance of its own in a temporary directory).

Real: the study, MLflow's own server on the study's store (as ``make ui`` starts it), Debian's
Chromium driven by Playwright, and the links printed at the end of the study (or by
``tuner report``). Changed: only the links' address, a free port instead of 5000, so that a
``make ui`` already running is left alone. Checked:

1. the runs link opens the experiment on its runs table (not MLflow's GenAI overview), with
   the study's parent run;
2. expanding the parent shows one nested run per trial of the study record;
3. the cost link shows a scatter of the metric against ``tuner.cost_usd`` with one point per
   trial, at the trials' recorded dollars;
4. the parent run's description holds the Pareto set.

Screenshots of each step go to ``--out``; it exits 1 naming the first check that failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tuner.mlflow_ui import UI_ADDRESS  # noqa: E402
from tuner.result import TuneResult  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 90_000  # one page on 2 busy cores


class Failed(Exception):
    """A check the UI did not pass."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", help="a study directory (default: run a small one first)")
    parser.add_argument("--out", default="ui-test", help="where the screenshots go")
    parser.add_argument("--trials", type=int, default=6, help="trials of the study it runs")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    timings: dict[str, float] = {}
    scratch = tempfile.mkdtemp(prefix="ui-")  # short: Ray's socket paths live under it
    server = None
    try:
        start = time.monotonic()
        if args.study:
            study = os.path.abspath(args.study)
            printed = _run([sys.executable, "-m", "tuner.cli", "report", study], ROOT)
        else:
            study, printed = _new_study(scratch, args.trials)
        timings["study"] = time.monotonic() - start
        with open(os.path.join(args.out, "printed.txt"), "w", encoding="utf-8") as f:
            f.write(printed)
        result = TuneResult.load(study)
        links = _links(printed, result.metric)
        slack = _durations(result)

        start = time.monotonic()
        port = _free_port()
        server = _serve(result.mlflow_uri, port, os.path.join(args.out, "mlflow-server.log"))
        timings["server"] = time.monotonic() - start
        base = f"http://127.0.0.1:{port}"
        links = {k: v.replace(UI_ADDRESS, base, 1) for k, v in links.items()}

        start = time.monotonic()
        _browse(result, links, base, args.out)
        timings["browser"] = time.monotonic() - start
    except Failed as exc:
        print(f"ui-test FAILED: {exc} (screenshots and logs in {args.out}/)", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            _stop(server)
        shutil.rmtree(scratch, ignore_errors=True)
    print("ui-test passed: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
          + f"; trial runs last at most {slack:.2f} s longer than Tune's time_total_s"
          + f"; screenshots in {args.out}/")
    return 0


# --- the study and the links it printed ---------------------------------------------------------

def _new_study(scratch: str, trials: int) -> tuple[str, str]:
    """Run the digits example small, on a Ray instance of its own; its path and output."""
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_TMPDIR": os.path.join(scratch, "ray")}
    os.makedirs(env["RAY_TMPDIR"])
    printed = _run([sys.executable, os.path.join(ROOT, "examples", "digits_mlp.py"),
                    "--num-samples", str(trials), "--max-epochs", "4", "--name", "ui-test",
                    "--storage-path", os.path.join(scratch, "tuner_results"),
                    "--mlflow-uri", f"sqlite:///{scratch}/mlflow.db"], scratch, env)
    return os.path.join(scratch, "tuner_results", "ui-test"), printed


def _run(cmd: list[str], cwd: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise Failed(f"{' '.join(cmd[1:3])} exited {proc.returncode}:\n{proc.stdout[-2000:]}"
                     f"\n{proc.stderr[-3000:]}")
    return proc.stdout


def _links(printed: str, metric: str) -> dict[str, str]:
    """The runs link and the cost link from the lines tuner printed."""
    found = {}
    for key, label in (("runs", "runs"), ("cost", f"{metric} against cost")):
        match = re.search(rf"^\s+{re.escape(label)}: (http\S+)$", printed, re.MULTILINE)
        if match is None:
            raise Failed(f"no '{label}: URL' line in what tuner printed:\n{printed[-1500:]}")
        found[key] = match.group(1)
    return found


def _durations(result: TuneResult) -> float:
    """Check that each trial run lasts at least as long as Tune says the trial trained
    (``time_total_s``, less a second: Ray's timing is the worker's); the most it lasts longer
    (start-up, scheduling). A run timed by the writer's batches lasts milliseconds."""
    from mlflow.tracking import MlflowClient

    client, slack = MlflowClient(result.mlflow_uri), 0.0
    for t in result.trials.itertuples():
        info = client.get_run(t.mlflow_run_id).info
        lasted = (info.end_time - info.start_time) / 1000
        path = os.path.join(result.path, f"trial_{t.trial_id}", "result.json")
        if not os.path.exists(path):  # checkpoints on s3://: nothing to compare with
            continue
        with open(path, encoding="utf-8") as f:
            trained = float([json.loads(line) for line in f if line.strip()][-1]["time_total_s"])
        if lasted < trained - 1.0:
            raise Failed(f"trial {t.trial_id}'s MLflow run lasts {lasted:.2f} s, but Tune says it "
                         f"trained {trained:.2f} s: the run's times are not the trial's")
        slack = max(slack, lasted - trained)
    return slack


# --- MLflow's server, as `make ui` starts it -----------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(uri: str, port: int, log: str) -> subprocess.Popen:
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "w") as out:
        server = subprocess.Popen(
            [mlflow, "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise Failed(f"mlflow server exited {server.returncode}; see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return server
        except OSError:
            time.sleep(1)
    _stop(server)
    raise Failed(f"mlflow server did not answer on port {port} within 180 s; see {log}")


def _stop(server: subprocess.Popen) -> None:
    """Stop the server and its uvicorn worker: its own session, started here."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


# --- the browser ------------------------------------------------------------------------------

def _browse(result: TuneResult, links: dict[str, str], base: str, out: str) -> None:
    from playwright.sync_api import Error, sync_playwright

    if not os.path.exists(CHROMIUM):
        raise Failed(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM)")
    trials = result.trials
    n = len(trials)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--headless=new", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        step = "start"
        try:
            # 1. The runs link: the runs table with the study's parent run.
            step = "runs"
            page.goto(links["runs"])
            names = page.locator('.ag-row [col-id="attributes.`Run Name`"]')
            names.filter(has_text=result.name).first.wait_for()
            if "/runs" not in page.url or "/overview" in page.url:
                raise Failed(f"the runs link landed on {page.url}, not the runs table")
            _close_assistant(page)  # MLflow's chat panel: room for the table and chart
            page.screenshot(path=os.path.join(out, "1-runs.png"))

            # 2. The parent's nested runs: one per trial.
            step = "children"
            names.filter(has_text=result.name).locator("button").first.click()  # expand it
            _until(lambda: names.count() >= n + 1, f"{n} nested runs under the parent")
            shown = {t.split("\n")[-1].strip() for t in names.all_inner_texts()}
            missing = set(trials.trial_id) - shown
            if missing or names.count() != n + 1:
                raise Failed(f"expected the parent and its {n} trials, found {names.count()} "
                             f"runs; trials not shown: {sorted(missing)}")
            page.screenshot(path=os.path.join(out, "2-trials.png"))

            # 3. The cost link: metric against tuner.cost_usd, a point per trial.
            step = "cost"
            page.goto("about:blank")
            page.goto(links["cost"])
            plot = _scatter(page, result.metric, n)
            want = sorted(float(c) for c in trials.cost_usd)
            got = sorted(plot["x"])
            if len(got) != n or any(not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
                                    for a, b in zip(got, want)):
                raise Failed(f"the scatter has {len(got)} points at {got}, expected the "
                             f"{n} trials' dollars {want}")
            page.wait_for_timeout(1000)  # let plotly finish drawing for the screenshot
            page.screenshot(path=os.path.join(out, "3-cost.png"))

            # 4. The parent run's description: the Pareto set.
            step = "description"
            page.goto(f"{base}/#/experiments/{plot['experiment']}/runs/{result.parent_run_id}"
                      f"?workflowType=machine_learning")
            page.get_by_text("Pareto set").first.wait_for()
            more = page.get_by_text("Show more")
            if more.count():
                more.first.click()  # the description's full table
            page.get_by_text("Pareto set").first.scroll_into_view_if_needed()
            page.screenshot(path=os.path.join(out, "4-parent.png"))
        except Error as exc:  # a wait timed out, a page did not load
            page.screenshot(path=os.path.join(out, f"failed-{step}.png"))
            raise Failed(f"{step}: {str(exc).splitlines()[0]}") from None
        except Failed:
            page.screenshot(path=os.path.join(out, f"failed-{step}.png"))
            raise
        finally:
            browser.close()


def _close_assistant(page) -> None:
    """Close MLflow's assistant panel if it is open (the browser remembers it)."""
    close = page.locator('button[data-component-id="mlflow.assistant.chat_panel.close"]')
    if close.count():
        close.first.click()


def _scatter(page, metric: str, n: int) -> dict:
    """The plotly scatter of ``metric`` against tuner.cost_usd: its x values, once all ``n``
    points are drawn, and the experiment id from the page's address."""
    probe = """([metric]) => {
        for (const el of document.querySelectorAll('.js-plotly-plot')) {
            const xt = el.layout?.xaxis?.title?.text, yt = el.layout?.yaxis?.title?.text;
            if (xt === 'tuner.cost_usd' && yt === metric) {
                const trace = (el.data || []).find(t => t.type && t.type.startsWith('scatter'));
                const drawn = el.querySelectorAll('.scatterlayer .point').length;
                return {x: trace ? Array.from(trace.x) : [], drawn};
            }
        }
        return null;
    }"""
    seen: dict = {}

    def ready() -> bool:
        seen.update(page.evaluate(probe, [metric]) or {})
        return len(seen.get("x", [])) >= n and seen.get("drawn", 0) >= n

    _until(ready, f"a scatter of {metric} against tuner.cost_usd with {n} points "
                  f"(last seen: {json.dumps(seen)[:300]})")
    match = re.search(r"#/experiments/([^/?]+)", page.url)
    return {**seen, "experiment": match.group(1) if match else ""}


def _until(condition, what: str, timeout_s: float = TIMEOUT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise Failed(f"no {what} within {timeout_s:.0f} s")
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
