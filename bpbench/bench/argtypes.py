"""argparse types shared by the command-line options of the tools and of ``bpbench.cli``.

Each turns the text of an option into a value or raises ``argparse.ArgumentTypeError`` (which
argparse prints as a one-line usage error naming the option).
"""

from __future__ import annotations

import argparse
import math


def int_list(text):
    """"1,16,256" -> [1, 16, 256]."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one int")
    return values


def positive_int_list(text):
    """Like :func:`int_list`, every value at least 1."""
    values = int_list(text)
    bad = [v for v in values if v < 1]
    if bad:
        raise argparse.ArgumentTypeError(f"expected positive ints, got {bad[0]} in {text!r}")
    return values


def non_negative_int_list(text):
    """Like :func:`int_list`, every value at least 0."""
    values = int_list(text)
    bad = [v for v in values if v < 0]
    if bad:
        raise argparse.ArgumentTypeError(f"expected non-negative ints, got {bad[0]} in {text!r}")
    return values


def name_list(text):
    """"numpy,numba" -> ["numpy", "numba"]."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


def positive_int(text):
    """An int of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {value}")
    return value


def non_negative_int(text):
    """An int of at least 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative int, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative int, got {value}")
    return value


def positive_float(text):
    """A finite float above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def finite_float(text):
    """Any finite float."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value
