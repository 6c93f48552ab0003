"""Typed-schema helpers: build frozen dataclasses from YAML mappings, naming the key path of any error.

A leaf module (standard library only): ``config`` builds ``Params`` with it and every recipe validates its
own ``options`` with it, without either importing the other (the models import torch; loading params
must not).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal


class ConfigError(ValueError):
    """A wrong key or value in params.yaml; the message names the key path and what is allowed."""


def _allowed(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(tp))
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the type annotation ``tp``; return it converted (dataclasses, tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{path}: {value!r} is not allowed; expected " + " or ".join(_allowed(a) for a in args))
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not allowed; expected {_allowed(tp)}")
        return value
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        key_t, val_t = args
        return {_coerce(k, key_t, f"{path}"): _coerce(v, val_t, f"{path}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, t, f"{path}[{i}]") for i, (v, t) in enumerate(zip(value, args)))
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {tp}")  # pragma: no cover - a schema bug


def build_dataclass(cls: type, raw: Any, path: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and missing required ones."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'params'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    # a field with metadata {"param": False} is set by the program, never from the file
    names = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("param", True)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key; allowed keys: {', '.join(names)}")
    kwargs = {}
    for name, f in names.items():
        key = f"{path}.{name}" if path else name
        if name in raw:
            kwargs[name] = _coerce(raw[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key is missing")
    return cls(**kwargs)
