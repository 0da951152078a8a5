"""A finished pa_batching study as `tune` leaves it (ordered choices stored as positions, the values
in ``config``), made without running a trial: for the tests of commands that read a study."""
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution, IntDistribution

DBS = "model_config.decode_batch_size"
MEASURED = {"model_config.prefill_batch_size": 2, DBS: 64, "pa_config.num_blocks": 512, "pa_config.block_size": 16}


def make_study(root: Path) -> Path:
    storage = f"sqlite:///{root / 'trials' / 'pa_batching.db'}"
    s = optuna.create_study(study_name="pa_batching", storage=storage, directions=["minimize", "maximize"])
    s.add_trial(optuna.trial.create_trial(
        params={"model_config.prefill_batch_size.index": 1, f"{DBS}.index": 6, "pa_config.num_blocks": 512,
                "pa_config.block_size.index": 1},
        distributions={"model_config.prefill_batch_size.index": IntDistribution(0, 3),
                       f"{DBS}.index": IntDistribution(0, 6),
                       "pa_config.num_blocks": IntDistribution(32, 1024, log=True),
                       "pa_config.block_size.index": IntDistribution(0, 3)},
        values=[1.5, 40.0], user_attrs={"config": MEASURED, "feasible": True}))
    s.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                                          values=[9.0, 1.0], user_attrs={"feasible": False}))
    return root

