"""Privacy-respecting engagement analytics from classroom video."""
__version__ = "0.1.0"
