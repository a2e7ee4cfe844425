"""User-facing configuration errors: one line that names the key, the bad value and what is accepted."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A bad configuration value, reported to the user as one line without a stack trace."""


def choice_error(key: str, value: object, accepted: Iterable[str]) -> ConfigError:
    """Build a ConfigError for ``key=value`` that lists the accepted values and close matches."""
    accepted = sorted(accepted)
    close = difflib.get_close_matches(str(value), accepted, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"{key}={value!s} is not valid; accepted: {', '.join(accepted)}.{hint}")
