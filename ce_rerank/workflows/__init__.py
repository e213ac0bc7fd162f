"""Workflows built on the core: evaluation, fine-tuning and the ``ce-rerank`` command line.

The core (``ce_rerank``'s own modules: scoring, ranking, the reranker) never imports this
package; these modules import the core and the optional libraries of their extras.
"""
