"""`python -m cti` runs the command line, as the `cti` script does."""

import sys

from cti.cli import main

sys.exit(main())
