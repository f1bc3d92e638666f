"""`python -m cti.sim`: the simulated PBX (same options as `cti sim`)."""

import sys

from cti.sim.cli import main

sys.exit(main())
