"""sandman: run several versions of a legacy command-line tool side by side, one container each."""

__version__ = "0.1.0"
