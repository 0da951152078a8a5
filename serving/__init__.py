"""The serving side: config schema, stacks, the embedded engine, the simulator, probes."""
