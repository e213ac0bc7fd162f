"""``ce_rerank.finetune``: the public name of the fine-tuning workflow (``ce_rerank.workflows.finetune``).

The implementation lives with the other workflows, outside the core.
"""

from __future__ import annotations

from .workflows.finetune import *  # noqa: F403
from .workflows.finetune import __all__ as __all__
