"""``ce_rerank.evaluation``: the public name of the evaluation workflow (``ce_rerank.workflows.evaluation``).

Kept where 0.1 documented it; the implementation lives with the other workflows, outside the core.
"""

from __future__ import annotations

from .workflows.evaluation import *  # noqa: F403
from .workflows.evaluation import __all__ as __all__
