"""The hmr_ros node on a camera: `ros2 launch hmr_ros hmr.launch.py image_topic:=/camera/image_raw`.

The node is a managed (lifecycle) node; with autostart:=true (default) it configures and
activates itself, with autostart:=false it waits for `ros2 lifecycle set /hmr_node configure`.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("hmr_ros")
    args = [
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="camera image topic (raw; see `compressed`)"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera_info",
                              description="camera_info of that camera"),
        DeclareLaunchArgument("detections_topic", default_value="",
                              description="optional vision_msgs/Detection2DArray of person "
                                          "boxes, matched to images by stamp"),
        DeclareLaunchArgument("model", default_value="auto",
                              description="auto | vishmr | ochmr | imphmr | instancehmr | "
                                          "dpmesh: the regressor (a name alone picks its "
                                          "bundled model; instancehmr needs no detector)"),
        DeclareLaunchArgument("person_detector", default_value="auto",
                              description="auto | blazepose | none: where people come from "
                                          "without a detections topic"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "hmr.yaml"),
                              description="ROS 2 parameter file of the node"),
        DeclareLaunchArgument("node_name", default_value="hmr_node", description="node name"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate at start (else wait for a "
                                          "lifecycle manager)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (replaying bags)"),
        DeclareLaunchArgument("log_level", default_value="info", description="node log level"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="also start RViz with the shipped configuration"),
    ]
    node_args = ["--ros-args", "--log-level", LaunchConfiguration("log_level")]
    common = dict(
        package="hmr_ros", executable="hmr_node", name=LaunchConfiguration("node_name"),
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {"use_sim_time": PythonExpression(
                        ["'", LaunchConfiguration("use_sim_time"), "' == 'true'"]),
                     "detections_topic": LaunchConfiguration("detections_topic"),
                     "model": LaunchConfiguration("model"),
                     "person_detector": LaunchConfiguration("person_detector")}],
        remappings=[("image", LaunchConfiguration("image_topic")),
                    ("image/compressed",
                     [LaunchConfiguration("image_topic"), "/compressed"]),
                    ("camera_info", LaunchConfiguration("camera_info_topic"))],
    )
    autostart = LaunchConfiguration("autostart")
    return LaunchDescription(args + [
        Node(**common, arguments=node_args, condition=IfCondition(autostart)),
        Node(**common, arguments=["--no-autostart", *node_args],
             condition=UnlessCondition(autostart)),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", os.path.join(share, "config", "hmr.rviz")],
             condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
