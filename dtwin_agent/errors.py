"""Every exception this project raises on purpose, in one tree under :class:`DTwinError`.

The CLI maps :class:`InputError` (bad input or usage) to exit code 2 and everything else to 1;
the LangChain tool turns each into a ``ToolException`` with a hint.

```
DTwinError
├── InputError (also ValueError)        bad input or usage -> exit 2
│   ├── ImageError                      unreadable, truncated or not an image
│   └── ConfigError                     an invalid setting, a provider that cannot be used
│       ├── UnknownModelError           a model name that is not registered
│       └── ModelNotFetchedError        a registered model not in the store yet
├── ProviderError                       a model provider failed for good
│   └── ProviderCallError               ... with the provider, stage, kind, status and attempts
├── ParseError (also ValueError)        nothing usable in a model's answer
├── ReasoningFailed                     the reasoner's first answer was unusable: no selection
├── SessionError                        a chat session cannot be used now
│   ├── SessionBusyError                another turn of it is still running
│   └── SessionStoreError               its database is damaged, or lost while its files remain
└── FetchError                          no source could deliver a model file
    ├── ChecksumError                   a file's sha256 differs from the pinned one
    └── NetworkError                    the network or the package index could not be reached
```
"""

from __future__ import annotations

from typing import Any, Literal

ErrorKind = Literal["transient", "auth", "output", "fatal"]


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


class ProviderCallError(ProviderError):
    """A model call failed for good (after retries, or at once for errors retrying cannot fix).

    Attributes:
        provider: the provider's short name (``openai``...).
        stage: the graph stage that made the call.
        kind: ``transient`` (retries exhausted), ``auth`` (401/403), ``output`` (the provider
            rejected the model's own answer, e.g. cut off by the token limit) or ``fatal``.
        status_code: the HTTP status when there was one.
        attempts: how many times the call was made.

    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        stage: str,
        kind: ErrorKind,
        status_code: int | None,
        attempts: int,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.stage = stage
        self.kind = kind
        self.status_code = status_code
        self.attempts = attempts


class ParseError(DTwinError, ValueError):
    """Nothing usable could be recovered from a model's answer.

    Attributes:
        report: what parsing found before it gave up (a ``ParseReport``: the unknown ids an
            answer named, for instance), or None.
    """

    def __init__(self, message: str = "", *, report: Any = None):
        super().__init__(message)
        self.report = report


class ReasoningFailed(DTwinError):
    """The reasoner gave no usable answer at the first step: the result is a failure, not a selection.

    Raised where a failed result must stop the caller (the CLI after writing its files, the tool);
    the Python API returns the result with ``ok`` False instead.
    """


class SessionError(DTwinError):
    """A chat session cannot be used now (see the subclasses)."""


class SessionBusyError(SessionError):
    """Another turn of the session (in this or another process) did not finish in time."""


class SessionStoreError(SessionError):
    """The sessions database is damaged or unusable, or lost a session whose turn files remain."""


class UnknownModelError(ConfigError):
    """A name that is neither a registered model nor an existing file."""


class ModelNotFetchedError(ConfigError):
    """A registered model whose file is not in the store yet."""


class FetchError(DTwinError):
    """No source could deliver the file."""


class ChecksumError(FetchError):
    """A file's sha256 differs from the pinned one (the file has been removed)."""


class NetworkError(FetchError):
    """The network, a download host or the package index could not be reached at all."""
