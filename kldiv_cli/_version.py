# Kept as a literal so `kldiv --version` does not pay for importlib.metadata.
__version__ = "0.1.0"
