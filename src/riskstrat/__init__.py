"""riskstrat: open population health risk stratification from linked person-level records."""

import os as _os
import time as _time

__version__ = "0.1.0"

# When riskstrat was first imported (seconds since the epoch): where the process's own start cannot
# be read, the score run's stage report counts its start-up from here.
IMPORTED_AT = _time.time()


def process_started() -> float:
    """When this process started, in seconds since the epoch: from /proc (Linux: the process's start in
    clock ticks since boot, against the seconds since boot), else when riskstrat was first imported."""
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        return _time.time() - (uptime - int(fields[19]) / _os.sysconf("SC_CLK_TCK"))  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return IMPORTED_AT
