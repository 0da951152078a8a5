"""The workload a trial replays: traces of any known format (formats/), read lazily in the
stack's tokens (trace), prompts synthesized where a trace gives lengths only (synth), arrival
models (arrivals), the replay plan (plan) and trace statistics (stats)."""
