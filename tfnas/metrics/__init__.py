"""Training-free metrics, registered by name (see :mod:`tfnas.metrics.registry`).

The built-in metric modules are imported on first registry look-up, which
registers them and the passes they need.
"""
