"""dbpipe: verified database dumps and atomic restores for Bareos bpipe, job hooks and shells."""

__version__ = "0.1.0"
