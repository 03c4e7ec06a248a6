"""Attractor distillation: feed-forward students trained on a teacher's fixed points (Eq. 8 / Eq. 9)."""
