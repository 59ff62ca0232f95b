"""Benchmarks of our ModernBERT against transformers' (speed, memory, MFU).

Imports torch, transformers and `modernbert.model` only, so it runs on a bare GPU box;
`scripts/benchmark.py` is the command line, docs/benchmarks.md the method and figures.
"""
