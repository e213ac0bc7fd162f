"""``python -m ce_rerank``: the same as the ``ce-rerank`` command."""

import sys

from .workflows.cli import main

sys.exit(main())
