"""Start segment_node with the package's parameters; optionally RViz with the package's display config.

    ros2 launch css_perception segment.launch.py points_topic:=/velodyne_points image_topic:=/camera/image_raw \
        model_dir:=/opt/models rviz:=true

With ``image_transport:=compressed`` the node reads CompressedImage frames from ``<image_topic>/compressed``.
``model_dir`` and ``image_transport`` are launch arguments with defaults, so they override ``params_file``: set them
here, not in the file. For a replay (``ros2 bag play --clock``, ``css-perception play --clock``) add
``use_sim_time:=true``: the node and RViz then take their time from ``/clock``. A node per camera: launch again
with ``namespace:=<name>`` (its topics become ``/<name>/segment_node/...``; the package's params file applies to
``segment_node`` in any namespace) and a params file with ``enable_lidar: false``.
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare('css_perception')
    return LaunchDescription(
        [
            DeclareLaunchArgument('points_topic', default_value='/points', description='input PointCloud2 topic'),
            DeclareLaunchArgument('image_topic', default_value='/camera/image_raw', description='input Image topic'),
            DeclareLaunchArgument(
                'image_transport', default_value='raw', description="'raw', or 'compressed': <image_topic>/compressed"
            ),
            DeclareLaunchArgument(
                'params_file',
                default_value=PathJoinSubstitution([share, 'config', 'segment.yaml']),
                description='parameters of segment_node',
            ),
            DeclareLaunchArgument('model_dir', default_value='models', description='model registry root'),
            DeclareLaunchArgument('rviz', default_value='false', description='also start RViz'),
            DeclareLaunchArgument('namespace', default_value='', description="segment_node's namespace"),
            DeclareLaunchArgument(
                'use_sim_time', default_value='false', description='take the time from /clock (a replayed bag)'
            ),
            Node(
                package='css_perception',
                executable='segment_node',
                name='segment_node',
                namespace=LaunchConfiguration('namespace'),
                output='screen',
                parameters=[
                    LaunchConfiguration('params_file'),
                    {
                        'model_dir': LaunchConfiguration('model_dir'),
                        'image_transport': LaunchConfiguration('image_transport'),
                        'use_sim_time': LaunchConfiguration('use_sim_time'),
                    },
                ],
                remappings=[
                    ('points', LaunchConfiguration('points_topic')),
                    ('image', LaunchConfiguration('image_topic')),
                ],
            ),
            Node(
                package='rviz2',
                executable='rviz2',
                name='rviz2',
                arguments=['-d', PathJoinSubstitution([share, 'config', 'css_perception.rviz'])],
                parameters=[{'use_sim_time': LaunchConfiguration('use_sim_time')}],
                condition=IfCondition(LaunchConfiguration('rviz')),
            ),
        ]
    )
