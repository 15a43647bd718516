"""Train several models under the same budget and compare them: accuracy, size, speed, memory."""

from foveal.compare.workflow import DEFAULT_MODELS, compare, parse_models
from foveal.reporting.comparison import comparison_rows, markdown_table

__all__ = ["DEFAULT_MODELS", "compare", "comparison_rows", "markdown_table", "parse_models"]
