"""Ray Tune, at the edge: the one package that imports ``ray.tune``.

It wires a study as Ray Tune runs it -- ``OptunaSearch`` (TPE, study persisted in
an Optuna journal file), ``ASHAScheduler``, failure retries, checkpoints -- and
adds what Ray's integration lacks:

* a trial stopped early by ASHA is told to Optuna as PRUNED with its intermediate
  values (Ray tells it COMPLETE with a truncated value, which misleads TPE);
* ASHA's rungs are saved with the experiment, so a resumed study keeps them;
* every trial's progress goes to the study record and to MLflow as it happens;
* a trial whose snapshot names a checkpoint deleted since resumes from its newest one.

Modules, one job each: ``trial`` (what runs on the worker), ``search`` (OptunaSearch and
ASHA), ``callbacks`` (Tune's events into the study's bookkeeping), ``run`` (join the
cluster, build, fit and restore the Tuner).
"""

from tuner.engine.run import (
    can_restore,
    check_address,
    connect,
    fail_running_optuna_trials,
    preflight,
    resume_study,
    run_study,
    trial_slots,
)
from tuner.engine.search import optuna_storage, user_metrics
from tuner.engine.trial import STATE_FILE, current_trial_id, get_checkpoint, node_is_draining, report_to_tune

__all__ = [
    "STATE_FILE",
    "can_restore",
    "check_address",
    "connect",
    "current_trial_id",
    "fail_running_optuna_trials",
    "get_checkpoint",
    "node_is_draining",
    "optuna_storage",
    "preflight",
    "report_to_tune",
    "resume_study",
    "run_study",
    "trial_slots",
    "user_metrics",
]
