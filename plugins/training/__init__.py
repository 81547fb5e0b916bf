"""The built-in optimizers, learning-rate schedules and loggers of the training engine.

The engine itself is ``lmforge.engine``; these are its swappable parts, registered through
the ``register_optimizers``, ``register_schedulers`` and ``register_loggers`` hooks like a
third party's would be.
"""
