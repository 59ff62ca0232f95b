"""Data preparation: sources of raw text and code, the built-in local corpus, MDS conversion.

Kept import-free so that worker processes (spawned) load only what tokenization needs.
"""
