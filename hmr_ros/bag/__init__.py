"""Bags on `rosbags`: read rosbag2 (sqlite3, MCAP) and ROS 1, write rosbag2 with this package's
message definitions inside, replay on the built-in transport, record from it, and a synthetic
sample bag with ground truth."""

from .reader import BagError, BagMessage, BagReader, TopicSummary, convert_message
from .writer import STORAGES, BagWriter

__all__ = ["BagError", "BagMessage", "BagReader", "BagWriter", "STORAGES", "TopicSummary",
           "convert_message"]
