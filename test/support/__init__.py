"""Test-only helpers shared across the suite (tiny ONNX models, bag writers, rclpy fixtures)."""
