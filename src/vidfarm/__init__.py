"""vidfarm: an open video processing farm."""

__version__ = "0.1.0"
