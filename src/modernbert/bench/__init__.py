"""Benchmarks of our ModernBERT against transformers' (speed, memory, MFU).

Imports torch, transformers, `modernbert.model` and the flat batch of `modernbert.data.flat`
(numpy) only, so it runs on a bare GPU box;
`scripts/benchmark.py` is the command line, docs/benchmarks.md the method and figures.
"""
