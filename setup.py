"""ament_python install for css_perception (the onboard runtime)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'css_perception'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.launch.py')),
        (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.rviz')),
    ],
    # rclpy and the message packages come from ROS (package.xml), never from here.
    install_requires=[
        'setuptools',
        'numpy>=1.24',
        'onnxruntime>=1.17',
        'pyyaml',
        'rosbags>=0.10',
        'pillow',
        'watchdog>=3',
    ],
    extras_require={'gpu': ['onnxruntime-gpu>=1.17']},
    python_requires='>=3.10',
    zip_safe=True,
    maintainer='css_perception developers',
    maintainer_email='css-perception@users.noreply.github.com',
    description='Live LiDAR and camera semantic segmentation with ONNX Runtime, and models that learn new classes.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'css-perception = css_perception.ros.cli:main',
            'segment_node = css_perception.ros.node:main',
        ],
    },
)
