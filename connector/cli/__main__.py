"""``python -m connector.cli``: the same as the ``des`` script."""

import sys

from connector.cli import main

sys.exit(main())
