"""Bundled checkpoints (see docs/training.md for the commands that made them)."""
