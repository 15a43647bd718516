"""A self-contained HTML evaluation report for a training run."""

from foveal.reporting.build import write_report

__all__ = ["write_report"]
