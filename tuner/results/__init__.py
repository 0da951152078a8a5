"""What a study gives back: the exported best config, the HTML report, optuna-dashboard."""
