"""Process setup shared by the server and client programs.

Import this module before flwr or tensorflow: both read the environment
variables set here once, at import time.
"""

from __future__ import annotations

import logging
import os
import sys

# flwr 1.42 sends usage telemetry to telemetry.flower.ai unless this is "0"
# (flwr/supercore/telemetry.py). The workloads run on a closed machine and must not
# contact outside hosts, so telemetry is always turned off, even if the caller
# set the variable.
os.environ["FLWR_TELEMETRY_ENABLED"] = "0"

# Level 1 hides TensorFlow's C++ INFO lines but keeps its warnings and errors. TensorFlow
# 2.21 still prints the few INFO lines logged before absl logging is initialised.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")


def setup_logging(program: str) -> logging.Logger:
    """Return the "workloads" logger, writing timestamped lines tagged with `program` to stderr.

    Also switches Flower's console handler to plain text with timestamps, because
    its default ANSI colour codes end up verbatim in the supervisor's log files.
    """
    from flwr.common.logger import update_console_handler

    update_console_handler(colored=False, timestamps=True)

    logger = logging.getLogger("workloads")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{program}] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        # The "flwr" logger has its own handler, and the root logger is left alone.
        logger.propagate = False
    return logger
