"""``python -m lmscope`` runs the CLI."""

import sys

from lmscope.cli import main

sys.exit(main())
