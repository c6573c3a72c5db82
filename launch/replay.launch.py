"""A bag into the node: `ros2 launch hmr_ros replay.launch.py bag:=/path/to/bag`.

Plays the bag with its clock (`ros2 bag play --clock`) and runs the node with use_sim_time,
on the topics of `hmr-ros bag make-sample` by default.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def generate_launch_description():
    share = get_package_share_directory("hmr_ros")
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 to replay (folder or file)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("loop", default_value="false", description="replay in a loop"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="image topic in the bag"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info",
                              description="camera_info topic in the bag"),
        DeclareLaunchArgument("detections_topic", default_value="/ground_truth/detections",
                              description="person boxes in the bag ('' = none)"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "hmr.yaml"),
                              description="ROS 2 parameter file of the node"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz"),
    ]
    play = [ExecuteProcess(
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock",
             "--rate", LaunchConfiguration("rate"), *extra],
        output="screen", condition=condition)
        for extra, condition in (([], UnlessCondition(LaunchConfiguration("loop"))),
                                 (["--loop"], IfCondition(LaunchConfiguration("loop"))))]
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "hmr.launch.py")),
        launch_arguments={"image_topic": LaunchConfiguration("image_topic"),
                          "camera_info_topic": LaunchConfiguration("camera_info_topic"),
                          "detections_topic": LaunchConfiguration("detections_topic"),
                          "params_file": LaunchConfiguration("params_file"),
                          "use_sim_time": "true", "rviz": LaunchConfiguration("rviz")}.items())
    return LaunchDescription(args + [node, *play])
