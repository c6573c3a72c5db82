"""``python -m hmr_ros.train --config ...`` (e.g. under ``torchrun``)."""

import sys

from .cli import train_main

sys.exit(train_main())
