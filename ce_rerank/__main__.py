"""``python -m ce_rerank``: the same as the ``ce-rerank`` command."""

import sys

from .cli import main

sys.exit(main())
