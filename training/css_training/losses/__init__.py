"""Losses: base segmentation and the continual-learning methods (MiB, LGKD, LSKD, M2SKD), as pure functions."""
