"""Subcommands beside the study: bare runs by stage, LMDeploy-style profiles, simulator calibration."""
