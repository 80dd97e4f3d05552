# An in-tree build backend that phones home while building.
import os
import socket

from premain_scenario_backend import get_requires_for_build_wheel  # noqa: F401
from premain_scenario_backend import build_wheel as _build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    socket.create_connection((os.environ.get("PREMAIN_SINK_HOST", "127.0.0.1"), int(os.environ["PREMAIN_SINK_PORT"])), timeout=3).close()
    return _build_wheel(wheel_directory, config_settings, metadata_directory)
