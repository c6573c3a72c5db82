#!/bin/sh
# Fetch licence-checked photographs (backgrounds, clothing prints) for the synthetic data into
# ${HMR_ROS_PHOTOS:-~/.cache/hmr_ros/photos} (or --dest DIR). Needs apt-get and dpkg-deb
# (Debian/Ubuntu); installs nothing. Every photo's package, licence and copyright holder are
# recorded in the folder's manifest.json. Never commit the fetched files.
#
#   scripts/fetch_photos.sh [--dest DIR]
#   scripts/fetch_photos.sh info        # what is there
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
[ -x "$here/.venv/bin/python" ] && python="$here/.venv/bin/python"
cmd=fetch
if [ "$1" = "info" ] || [ "$1" = "fetch" ]; then cmd=$1; shift; fi
cd "$here"
exec "$python" -m hmr_ros.data.synthetic.photos "$cmd" "$@"
