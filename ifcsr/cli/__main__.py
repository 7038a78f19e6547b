"""`python -m ifcsr.cli ...`: the `ifcsr` command. Imports ifcsr.cli.app only."""

import sys

from ifcsr.cli.app import main

sys.exit(main())
