"""Grad-grad safe attention kernels in Triton.

``kernels.attention`` is the public entry point (see kernels/attention.py for
the modes); ``kernels.reference`` is the PyTorch math path every kernel is
judged against.
"""

from . import reference
from .attention import BWD_MODES, attention

__all__ = ["attention", "reference", "BWD_MODES"]
