"""Benchmarks of fl-supervisor against the classic recipe, Flower's Simulation Engine and the compute floor.

Run `python -m bench --help`. Nothing here is part of the installed package.
"""
