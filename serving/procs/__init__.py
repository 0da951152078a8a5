"""Processes the project starts: each in its own process group, logged, stopped by group, and
watched so that none outlives the command that started it."""
