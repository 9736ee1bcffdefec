"""Nothing bert14 runs reports on the machine it runs on.

Two dependencies collect usage data by default, and two more can:
- ONNX Runtime writes telemetry events (device, CPU, OS, the Python executable's path) to an offline
  store under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ in every process that opens a session.
  Its switch is the environment variable ORT_DISABLE_TELEMETRY=1, read when onnxruntime is imported
  (`onnxruntime.disable_telemetry_events()` did not stop the store being written, measured with 1.31.1).
- OpenVINO's model converter and NNCF send usage events to Google Analytics through
  `openvino_telemetry` (a client id and counters under ~/intel/; `import openvino` alone sends one).
  Both fall back to their own no-op stubs when that package cannot be imported, so this process marks it
  unimportable (a None entry in sys.modules) before openvino is imported. With no network, the sender
  once held an export's exit for minutes in getaddrinfo; now there is no sender.
- Hugging Face Hub and Ray send usage data only when they download or start a cluster with it on;
  bert14 loads local files and starts local clusters, and switches both off all the same.

All of it is process-local: the user's own consent files and settings are left as they are, and a
variable the user has set is not overridden. An application that embeds bert14 gets the same by
importing bert14 before onnxruntime and openvino, or by doing what `switch_off()` does itself.
"""

from __future__ import annotations

import os
import sys

SWITCHES = {
    "ORT_DISABLE_TELEMETRY": "1",  # ONNX Runtime's offline telemetry store
    "HF_HUB_DISABLE_TELEMETRY": "1",  # huggingface_hub's usage pings
    "RAY_USAGE_STATS_ENABLED": "0",  # Ray's cluster usage report (children inherit it: raylet, workers)
}
BLOCKED_MODULES = ("openvino_telemetry",)  # OpenVINO's converter and NNCF use their stubs without it


def switch_off() -> None:
    """Switch every collector off for this process (see the module's docstring). Too late for a module
    imported before bert14: an embedding application imports bert14 first, or sets the same itself."""
    for name, value in SWITCHES.items():
        os.environ.setdefault(name, value)
    for name in BLOCKED_MODULES:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # `import` raises ImportError
