"""Cheaper fidelities before a full trial: the simulator's pre-screen and short real probes."""
