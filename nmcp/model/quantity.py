"""Kubernetes resource quantities in the canonical form the API server stores.

A Pod's `resources` come back from the API server rewritten: `1000m` is stored as `1`, `0.5` as
`500m`, `1024Mi` as `1Gi`. Metacontroller compares the Pod it would apply with the one it
observes, so a hook that returns `1000m` sees a change on every sync, and under the `Recreate`
strategy that deletes the Pod each time. The hooks therefore return quantities already in the
stored form, computed here the way apimachinery's `resource.Quantity` canonicalizes them:

* the number is kept exactly (a Fraction), rounded up to nano units as the API server does;
* a binary suffix (`Ki` .. `Ei`) stays binary when the value is a whole number of at least
  1024, written with the largest power of 1024 that divides it; otherwise it turns decimal;
* a decimal value (SI suffix or none, or an `e` exponent) is written as an integer mantissa
  with the largest exponent that is a multiple of 3, shown as an SI suffix (`n` .. `E`) or as
  `eN` for exponent notation.

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_NANO = Fraction(1, 10**9)
# The API server refuses quantities beyond int64 nano units; so do we, rather than print e300.
_LIMIT = Fraction(2**63 - 1)
_MAX_CHARS = 100  # int64 nano units need 29 digits; a longer quantity is no quantity


def canonical_quantity(value: str | int | float) -> str:
    """The stored form of a quantity such as `"1000m"`, `0.5` or `"1024Mi"`; ValueError if it is none."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a quantity such as 500m or 1Gi, got {value!r}")
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _MAX_CHARS:
        raise ValueError(f"expected a quantity such as 500m or 1Gi, got {len(text)} characters")
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ValueError(f"expected a quantity such as 500m or 1Gi, got {value!r}")
    number = Fraction(match["number"] if not match["number"].endswith(".") else match["number"][:-1])
    suffix = match["suffix"] or ""
    exponent_form = suffix[:1] in ("e", "E")
    if suffix in _BINARY:
        amount = number * 1024 ** _BINARY[suffix]
    elif exponent_form:
        amount = number * Fraction(10) ** _bounded_exponent(int(suffix[1:]), len(match["number"]))
    else:
        amount = number * Fraction(10) ** _DECIMAL[suffix]
    if match["sign"] == "-":
        amount = -amount
    if abs(amount) > _LIMIT:
        raise ValueError(f"quantity {value!r} is too large")
    # Precision below a nano unit is rounded up (towards +infinity), as ParseQuantity does.
    amount = Fraction(math.ceil(amount / _NANO)) * _NANO
    if amount == 0:
        return "0"
    if suffix in _BINARY and amount.denominator == 1 and abs(amount) >= 1024:
        return _binary(int(amount))
    return _decimal(amount, exponent_form)


def _bounded_exponent(exponent: int, digits: int) -> int:
    """`exponent`, moved towards zero where that cannot change the result: `1e999999999` must not
    compute a billion-digit number. A non-zero number written with `digits` characters lies within
    10**-digits and 10**digits, so beyond `digits + 20` it is past the int64 limit whatever it is
    (still too large), and below `-(digits + 10)` it is under a nano unit (still rounded to 1n or 0).
    """
    return max(min(exponent, digits + 20), -(digits + 10))


def _binary(amount: int) -> str:
    power = 0
    while power < 6 and amount % 1024 == 0:
        amount //= 1024
        power += 1
    suffix = next((s for s, p in _BINARY.items() if p == power), "")
    return f"{amount}{suffix}"


def _decimal(amount: Fraction, exponent_form: bool) -> str:
    # An integer mantissa with all factors of ten moved into the exponent...
    exponent = 0
    while amount.denominator != 1:
        amount *= 10
        exponent -= 1
    mantissa = int(amount)
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    # ...then the exponent lowered to a multiple of three.
    shift = exponent % 3
    mantissa *= 10**shift
    exponent -= shift
    if exponent_form:
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    if exponent in _DECIMAL_SUFFIX:
        return f"{mantissa}{_DECIMAL_SUFFIX[exponent]}"
    return f"{mantissa}e{exponent}"
