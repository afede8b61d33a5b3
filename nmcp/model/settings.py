"""Settings tables: a frozen dataclass whose every field names its environment variable.

A program's settings are one dataclass (the gateway's `gateway.config.Config`, the operator's
`hooks.settings.OperatorSettings`); each field is declared with `setting(env, default, meaning,
parse)`. That declaration is the only place the variable's name, type, default and meaning are
written: `from_env` reads the environment through it, `environment` writes it for the CLIs, and
`rows` gives the README's table and `--help` text. A test fails when code elsewhere reads an
`NMCP_*` variable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, field, fields
from typing import Any, TypeVar

T = TypeVar("T")
Parse = Callable[[str, str], Any]  # (variable name, raw value) -> value, SettingError naming the variable


class SettingError(ValueError):
    """An NMCP_* variable holds a value the program cannot use; the message names it."""


def setting(env: str, default: Any, meaning: str, parse: Parse, *, shown: str | None = None) -> Any:
    """A dataclass field read from `env`. `shown` is how the default reads in tables, when not plainly."""
    return field(default=default, metadata={"env": env, "meaning": meaning, "parse": parse, "shown": shown})


def from_env(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """An instance of the settings dataclass `cls` from `environ` (default: this process's), with
    `overrides` taking precedence; SettingError naming the first unusable variable. An empty
    variable counts as unset."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in _settings(cls):
        raw = env.get(f.metadata["env"])
        if raw is not None and raw.strip() != "":
            values[f.name] = f.metadata["parse"](f.metadata["env"], raw.strip())
    return cls(**{**values, **overrides})


def environment(cls: type, **values: Any) -> dict[str, str]:
    """The environment variables that make `from_env(cls)` give these field values (None: left out)."""
    by_name = {f.name: f for f in _settings(cls)}
    env = {}
    for name, value in values.items():
        if value is None:
            continue
        f = by_name[name]  # KeyError: a CLI passing a field the table does not have is a bug
        env[f.metadata["env"]] = _render(value, f.metadata["parse"])
    return env


def env_name(cls: type, name: str) -> str:
    """The variable that sets field `name` of `cls` (for messages that tell the user what to change)."""
    return next(f.metadata["env"] for f in _settings(cls) if f.name == name)


def rows(cls: type) -> Iterator[tuple[str, str, str]]:
    """(variable, default as shown, meaning) for each setting, in declaration order."""
    for f in _settings(cls):
        shown = f.metadata["shown"]
        if shown is None:
            shown = _render(f.default, f.metadata["parse"]) if f.default not in (None, (), "") else "(none)"
        yield f.metadata["env"], shown, f.metadata["meaning"]


def markdown(cls: type) -> str:
    """The README's table of `cls`."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{env}` | {_code(shown)} | {meaning} |" for env, shown, meaning in rows(cls)]
    return "\n".join(lines) + "\n"


def help_text(cls: type) -> str:
    """The settings of `cls` for a command's `--help` (click keeps `\\b` paragraphs as they are)."""
    lines = ["\b", "Environment (read once at start-up; options above override):"]
    for env, shown, meaning in rows(cls):
        lines.append(f"  {env} [{shown.strip('()')}]")
        lines.append(f"      {meaning.replace('`', '')}")
    return "\n".join(lines)


def _code(shown: str) -> str:
    return shown if shown.startswith("(") else f"`{shown}`"


def _settings(cls: type) -> Iterator[Field[Any]]:
    return (f for f in fields(cls) if "env" in f.metadata and f.default is not MISSING)


# --- parsers: (variable, raw) -> value ------------------------------------------------------------


def seconds(env: str, raw: str) -> float:
    """A positive, finite number of seconds."""
    value = _number(env, raw, float, "a number of seconds")
    if not value > 0:
        raise SettingError(f"{env}: must be positive, got {raw!r}")
    return value


def seconds_or_zero(env: str, raw: str) -> float:
    """Zero or more seconds (zero turns the thing off)."""
    value = _number(env, raw, float, "a number of seconds")
    if value < 0:
        raise SettingError(f"{env}: must be zero or more, got {raw!r}")
    return value


def count(env: str, raw: str) -> int:
    """A positive whole number."""
    value = _number(env, raw, int, "an integer")
    if value <= 0:
        raise SettingError(f"{env}: must be positive, got {raw!r}")
    return value


def count_or_zero(env: str, raw: str) -> int:
    """Zero or a positive whole number (zero: the program picks)."""
    value = _number(env, raw, int, "an integer")
    if value < 0:
        raise SettingError(f"{env}: must be zero or more, got {raw!r}")
    return value


def text(_env: str, raw: str) -> str:
    return raw


def flag(env: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{env}: expected true or false, got {raw!r}")


def names(_env: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def paths(_env: str, raw: str) -> tuple[str, ...]:
    """An `os.pathsep`-separated list of paths."""
    return tuple(part for part in raw.split(os.pathsep) if part)


def choice(*allowed: str) -> Parse:
    def parse(env: str, raw: str) -> str:
        if raw not in allowed:
            raise SettingError(f"{env}: expected one of {', '.join(allowed)}, got {raw!r}")
        return raw

    parse.allowed = allowed  # type: ignore[attr-defined]
    return parse


def address(env: str, raw: str) -> str:
    """HOST:PORT."""
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingError(f"{env}: expected HOST:PORT such as 127.0.0.1:8080, got {raw!r}")
    return raw


def _number(env: str, raw: str, kind: type, what: str) -> Any:
    try:
        value = kind(raw)
    except ValueError:
        raise SettingError(f"{env}: expected {what}, got {raw!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingError(f"{env}: expected {what}, got {raw!r}")
    return value


def _render(value: Any, parse: Parse) -> str:
    if isinstance(value, tuple):
        return (os.pathsep if parse is paths else ",").join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
