"""css_perception: live LiDAR and camera segmentation with ONNX Runtime, and models that learn new classes.

Layers (imports point down): ``ros`` (rclpy shells) -> ``runtime`` (ONNX Runtime, registry) -> ``core`` (numpy).
"""

__version__ = '0.1.0'
