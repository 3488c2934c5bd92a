"""Reports: results → pandas tables → plots → report.md. No GPU library is imported here."""

from __future__ import annotations

from bench.report.render import write_report

__all__ = ["write_report"]
