"""hmr_ros: camera images to SMPL human meshes with per-part visibility, as a ROS 2 node.

Subpackages are imported on demand (``hmr_ros.body``, ``hmr_ros.kernels``, ...); importing the
top-level package stays cheap so command-line tools and launch files start fast.
"""

__version__ = "0.1.0"
