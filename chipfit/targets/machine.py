"""This machine in words (for labelling measurements and calibrations): no measuring here.

>>> isinstance(host_device(), str)
True
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path


@functools.cache
def host_device() -> str:
    """This machine in words: CPU model and logical CPU count."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node() or 'host'} ({model}, {os.cpu_count()} logical CPUs)"
