"""User-facing configuration errors: one line that names the key, the bad value and what is accepted."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad configuration value, reported to the user as one line without a stack trace."""


class Unfit(ConfigError):
    """A method that cannot apply to a model: one line naming the method, the model, the need the
    model does not meet (``bench.methods.base.NEEDS``; empty when found only while running) and
    why. A sweep with ``unfit=skip`` skips the job instead of failing it."""

    def __init__(self, method: str, model: str, need: str, why: str) -> None:
        self.method, self.model, self.need, self.why = method, model, need, why
        lacks = f" (needs {need})" if need else ""
        super().__init__(f"method {method} cannot apply to model {model}{lacks}: {why}")

    def __reduce__(self) -> tuple:  # picklable with its fields (a launcher's worker process)
        return type(self), (self.method, self.model, self.need, self.why)


def first_line(err: BaseException) -> str:
    """The first non-empty line of ``err``'s message (its type's name when it has none): the one
    line a user is shown of an error raised by a library."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


#: Past this many accepted values an error names where to list them instead of listing them all.
MAX_LISTED = 60


def _close(value: str, names: list[str]) -> list[str]:
    """Up to 3 names close to ``value``: first those whose start nearly equals it (``deit_tinny``
    -> ``deit_tiny_patch16_224``: a typo in the family part of a long model name), then
    difflib's close matches."""
    starts = sorted(
        (-difflib.SequenceMatcher(None, value, n[: len(value)]).ratio(), n) for n in names
    )
    close = [n for s, n in starts[:3] if -s >= 0.9]
    close += [n for n in difflib.get_close_matches(value, names, n=3) if n not in close]
    return close[:3]


def choice_error(
    key: str, value: object, accepted: Iterable[object], listed_by: str | None = None
) -> ConfigError:
    """The ConfigError for ``key=value`` that lists the accepted values (or, past
    :data:`MAX_LISTED` of them, says how many and where ``listed_by`` lists them) and close
    matches."""
    names = sorted(str(a) for a in accepted)
    close = _close(str(value), names)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    if len(names) > MAX_LISTED:
        where = f", listed by {listed_by}" if listed_by else ""
        return ConfigError(
            f"{key}={value!s} is not valid; accepted: one of {len(names)} names{where}.{hint}"
        )
    return ConfigError(f"{key}={value!s} is not valid; accepted: {', '.join(names)}.{hint}")


def check_choice(key: str, value: T, accepted: Iterable[T]) -> T:
    """``value`` if it is one of ``accepted``, else the :func:`choice_error` for ``key``."""
    accepted = list(accepted)
    if value not in accepted:
        raise choice_error(key, value, accepted)
    return value


def check_bool(key: str, value: object) -> bool:
    """``value`` if it is a bool, else a ConfigError naming ``key`` (``"maybe"`` is not true)."""
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}={value!r} is not valid; accepted: true or false.")


def check_int(
    key: str, value: object, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an int (an integral number, not a bool) within ``[minimum, maximum]``, else a
    ConfigError naming ``key`` and the accepted range."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, float) and value.is_integer():
        ok, value = True, int(value)
    if ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return int(value)
    raise ConfigError(
        f"{key}={value!r} is not valid; accepted: {_range('an integer', minimum, maximum)}."
    )


def check_number(
    key: str,
    value: object,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: float | None = None,
    below: float | None = None,
) -> float:
    """``value`` as a finite float within the bounds (``minimum``/``maximum`` inclusive,
    ``above``/``below`` exclusive), else a ConfigError naming ``key`` and the accepted range."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)
        ok = (
            (minimum is None or v >= minimum)
            and (maximum is None or v <= maximum)
            and (above is None or v > above)
            and (below is None or v < below)
        )
        if ok:
            return v
    parts = []
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if above is not None:
        parts.append(f"> {above:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    if below is not None:
        parts.append(f"< {below:g}")
    what = "a number" + (f" {' and '.join(parts)}" if parts else "")
    raise ConfigError(f"{key}={value!r} is not valid; accepted: {what}.")


def _range(what: str, minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{what} in {minimum}..{maximum}"
    if minimum is not None:
        return f"{what} >= {minimum}"
    if maximum is not None:
        return f"{what} <= {maximum}"
    return what
