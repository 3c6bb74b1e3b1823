"""`python -m babyllm ...` (also how torchrun launches training)."""

import sys

from babyllm.cli import main

sys.exit(main())
