"""A `goflex-atp serve` process that has loaded its modules and waits for a go-file first.

    python -m tests.crash_server GOFILE serve --role ... --store ...

The crash test starts the next server while the current one runs, so that a restart after a
kill takes the time of opening the store and the socket, not that of importing the modules.
Once GOFILE exists, this is `goflex-atp` with the given arguments (`atp.cli.main`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import atp.interface.serve
import atp.services.providers
import atp.services.receivers  # noqa: F401 (loaded before the go-file, like a warm standby)
from atp.cli import main

_WAIT_S = 120.0  # a standby never used ends by itself


if __name__ == "__main__":
    go, deadline = Path(sys.argv[1]), time.monotonic() + _WAIT_S
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit(0)
        time.sleep(0.005)
    sys.exit(main(sys.argv[2:]))
