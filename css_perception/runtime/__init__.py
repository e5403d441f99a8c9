"""Inference runtime (ONNX Runtime, no torch, no ROS): models, segmenters, the model registry."""
