"""The Optuna side of serving-tuner: search spaces, studies, trace replay, scoring, export."""
