"""Real rclpy for the ROS tests: each test session talks on its own random DDS domain, localhost only.

A private domain keeps parallel test runs on one machine from hearing each other's topics.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

os.environ.setdefault('ROS_DOMAIN_ID', str(random.SystemRandom().randint(1, 101)))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

import rclpy
from rclpy.context import Context


@pytest.fixture
def ros_context() -> Iterator[Context]:
    """An initialised rclpy context of its own, shut down after the test."""
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()
