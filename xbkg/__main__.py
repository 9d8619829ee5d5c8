"""``python -m xbkg`` runs the command-line interface."""

import sys

from xbkg.cli import main

sys.exit(main())
