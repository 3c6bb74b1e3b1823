"""`python -m babyllm ...` (also how torchrun launches training)."""

import sys

from babyllm.commands.cli import main

sys.exit(main())
