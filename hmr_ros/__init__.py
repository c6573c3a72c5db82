"""hmr_ros: camera images to SMPL human meshes with per-part visibility, as a ROS 2 node.

Subpackages are imported on demand (``hmr_ros.body``, ``hmr_ros.kernels``, ...); importing the
top-level package stays cheap so command-line tools and launch files start fast.
"""

from pkgutil import extend_path

__version__ = "0.1.0"

# A colcon build installs the rosidl-generated ``hmr_ros.msg`` beside this package. When a
# source checkout comes first on sys.path (developing inside a sourced workspace), extend the
# package path so ``hmr_ros.msg`` is still found in the installed copy.
__path__ = extend_path(__path__, __name__)
