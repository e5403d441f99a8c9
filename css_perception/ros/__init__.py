"""rclpy shells: the segmentation node, the bag player and the command line."""
