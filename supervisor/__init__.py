"""Run one Flower server and its clients as supervised subprocesses."""

__version__ = "0.1.0"
