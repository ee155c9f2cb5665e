"""Reusable Keras layers."""

from tfrs_selreg.layers.gate import SelectiveGate

__all__ = ["SelectiveGate"]
