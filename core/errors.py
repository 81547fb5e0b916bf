"""Errors that speak to the user: what was wrong, which input or config key, and the fix."""


class LmforgeError(Exception):
    """Base class for every error lmforge raises on purpose.

    The CLI prints these without a traceback: the message is the whole story.
    """


class ConfigError(LmforgeError):
    """A config value that cannot work; the message names the key to change."""


class PluginError(LmforgeError):
    """A plugin that cannot be used: duplicate names, failed loads, unknown components."""


class DataError(LmforgeError):
    """Input data that cannot be trained on: empty, too small, unreadable."""


class DuplicateComponentError(PluginError):
    """Two distributions register a component of the same kind under the same name."""
