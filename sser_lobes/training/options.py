"""Checks of single recipe options on plain hyperparameter values.

Each raises :class:`~sser_lobes.errors.RecipeError` with one line naming the
option as it is typed on the command line (``--key``), the value, and what
is allowed. :mod:`sser_lobes.training.preflight` runs them on a preview of the
hyperparameters, before anything is built.
"""

from sser_lobes.errors import RecipeError


def check_choice(hparams, key, choices):
    """Raise :class:`RecipeError` unless ``hparams[key]`` is one of ``choices``.

    Example
    -------
    >>> check_choice({"batching": "bucketed"}, "batching", ("bucketed", "random"))
    >>> check_choice({"batching": "sorted"}, "batching", ("bucketed", "random"))
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: --batching must be one of bucketed, random; ...
    """
    value = hparams.get(key)
    if value not in choices:
        raise RecipeError(
            f"--{key} must be one of {', '.join(map(str, choices))}; got {value!r}"
        )


def check_int(hparams, key, minimum=None, maximum=None, allow_none=False):
    """Raise :class:`RecipeError` unless ``hparams[key]`` is an int in range.

    Example
    -------
    >>> check_int({"batch_size": 0}, "batch_size", minimum=1)
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: --batch_size must be an integer >= 1; got 0
    """
    value = hparams.get(key)
    if value is None and allow_none:
        return
    valid = isinstance(value, int) and not isinstance(value, bool)
    if valid and minimum is not None:
        valid = value >= minimum
    if valid and maximum is not None:
        valid = value <= maximum
    if not valid:
        bounds = []
        if minimum is not None:
            bounds.append(f">= {minimum}")
        if maximum is not None:
            bounds.append(f"<= {maximum}")
        condition = " and ".join(bounds)
        raise RecipeError(
            f"--{key} must be an integer{' ' + condition if condition else ''}; "
            f"got {value!r}"
        )


def check_number(hparams, key, minimum=0.0, inclusive=True):
    """Raise :class:`RecipeError` unless ``hparams[key]`` is a number >= minimum.

    Example
    -------
    >>> check_number({"lr": -1.0}, "lr", minimum=0.0, inclusive=False)
    Traceback (most recent call last):
    ...
    sser_lobes.errors.RecipeError: --lr must be a number > 0.0; got -1.0
    """
    value = hparams.get(key)
    valid = isinstance(value, (int, float)) and not isinstance(value, bool)
    if valid:
        valid = value >= minimum if inclusive else value > minimum
    if not valid:
        sign = ">=" if inclusive else ">"
        raise RecipeError(f"--{key} must be a number {sign} {minimum}; got {value!r}")
