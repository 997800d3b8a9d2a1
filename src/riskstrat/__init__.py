"""riskstrat: open population health risk stratification from linked person-level records."""

import time as _time

__version__ = "0.1.0"

# When riskstrat was first imported (seconds since the epoch): where the process's own start cannot
# be read, the score run's stage report counts its start-up from here.
IMPORTED_AT = _time.time()
