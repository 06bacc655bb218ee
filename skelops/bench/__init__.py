"""``skelops bench`` / ``python -m skelops.bench``: the op micro-benchmarks.

Ops register their cases with :func:`register`; :func:`run` measures them all on each
available device and :func:`write_report` stores the JSON under ``benchmarks/results/``.
"""

from .harness import Candidate, Case, format_table, register, registered_ops, run, write_report

__all__ = ["Candidate", "Case", "format_table", "register", "registered_ops", "run", "write_report"]
