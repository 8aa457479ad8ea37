"""Analysis of models: the course's per-layer sizing table (:mod:`reslab.analysis.summary`)."""

from reslab.analysis.summary import ModelSummary, compare, format_table, summarize

__all__ = ["ModelSummary", "compare", "format_table", "summarize"]
