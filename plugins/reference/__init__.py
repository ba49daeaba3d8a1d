"""Reference plugin: ``reference.ReferenceVSR``, the minimal method that exercises every core path."""

from reference.model import ReferenceVSR

__all__ = ["ReferenceVSR"]
