"""`python -m meshdream ...` runs the command line (how `client.ensure_server` starts `meshdream serve`)."""

import sys

from .cli import main

sys.exit(main())
