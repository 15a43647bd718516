"""A self-contained HTML evaluation report for a training run."""

from foveal.report.build import write_report

__all__ = ["write_report"]
