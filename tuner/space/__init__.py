"""A study's search space: the typed study file, Hydra-style overrides, the rigour options."""
