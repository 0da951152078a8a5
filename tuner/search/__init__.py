"""How configurations are proposed (the sampler) and how the best trial is chosen (selection)."""
