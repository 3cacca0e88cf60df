"""The project's exceptions.

Every expected failure raises a subclass of :class:`DTwinError`. The CLI maps
:class:`InputError` (bad input or usage) to exit code 2 and everything else to 1.
"""

from __future__ import annotations


class DTwinError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(DTwinError, ValueError):
    """The caller gave something unusable: a bad image, query, setting or path."""


class ImageError(InputError):
    """An image could not be read: missing, unreadable, truncated or not an image."""


class ConfigError(InputError):
    """A setting is invalid, or a provider it names cannot be used (missing key or package)."""


class ProviderError(DTwinError):
    """A model provider failed after all retries (timeouts, rate limits, 5xx)."""
