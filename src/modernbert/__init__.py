"""Pretrain ModernBERT-style encoders on text and code with MosaicML Composer."""

__version__ = "0.1.0"
