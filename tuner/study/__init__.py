"""An Optuna study of trials: the run loop, storage, resume after a crash, workers, finalists, progress."""
