"""Recorded data for training: bag and SemanticKITTI readers, poses, caching, multi-scan fusion."""
