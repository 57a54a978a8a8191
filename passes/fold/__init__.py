"""Lossless folding passes, one per module."""
