"""Benchmark suite: mixedmodels against lme4 and the Python peers, one command.

Run from the repository root: ``python bench/run.py`` (``--help`` for options).
See ``bench/README.md``.
"""
