"""The configuration system: typed dataclasses, a YAML file for defaults, ``--a.b=c`` overrides.

Every section is a dataclass; unknown keys, wrong types and bad values fail at start-up with
the file (or flag) and the dotted key named, never twenty minutes into a run. This module is
the machinery only (it imports nothing of the package); the job configurations live with their
jobs (``gumbel_rerank.training.config``) and each objective owns its settings dataclass.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem; the message names the source and the dotted key."""


# -- building dataclasses from plain data ------------------------------------------------------
def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(hint, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 (PyYAML) reads "3e-3" as a string: it wants "3.0e-3". Accept what users write.
        try:
            return float(value)
        except ValueError:
            pass
    if hint is Any or (isinstance(hint, type) and isinstance(value, hint)):
        if hint is int and isinstance(value, bool):
            raise ConfigError(f"{where}: expected int, got a boolean")
        return value
    expected = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")


def require_positive(section: object, names: tuple[str, ...], where: str) -> None:
    """A :class:`ConfigError` naming ``where.<name>`` unless each named field of ``section``
    (a settings dataclass) is a finite number > 0; None values are skipped (unset options)."""
    for name in names:
        value = getattr(section, name)
        if value is not None and not 0 < value < float("inf"):
            raise ConfigError(f"{where}.{name} must be a finite number > 0, got {value}")


def _apply_aliases(cls: type, data: dict, where: str) -> dict:
    """Move keys a section renamed (``cls.CONFIG_ALIASES``: old key -> dotted new place) to
    their new place, so configs written before the rename keep working."""
    aliases = getattr(cls, "CONFIG_ALIASES", {})
    if not any(old in data for old in aliases):
        return data
    data = dict(data)
    for old, new in aliases.items():
        if old not in data:
            continue
        value = data.pop(old)
        *parents, leaf = new.split(".")
        node = data
        for part in parents:
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"{where}: {old} cannot be combined with {part} given as a value")
            node[part] = child = dict(child)
            node = child
        if leaf in node:
            raise ConfigError(f"{where}: {old} and {new} are both set; keep {new}")
        node[leaf] = value
    return data


def _canonical(cls: type, data: Any, where: str) -> Any:
    """``data`` with every renamed key (at any depth of ``cls``'s sections) at its new place, so
    a file in the new spelling and an override in the old one merge as the user means."""
    if not isinstance(data, dict):
        return data
    data = _apply_aliases(cls, data, where)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in data and dataclasses.is_dataclass(hints.get(f.name)):
            data[f.name] = _canonical(hints[f.name], data[f.name], f"{where}.{f.name}")
    return data


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from nested plain data, checking every key and type."""
    hints = typing.get_type_hints(cls)
    data = _apply_aliases(cls, data, where)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    kwargs = {key: _coerce(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}: {err}") from err


def to_dict(config: Any) -> dict:
    """Plain nested data (tuples as lists) for YAML/JSON."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return plain(config)


def parse_overrides(items: list[str]) -> dict:
    """``["optim.lr=1e-4", "run.wandb=offline"]`` -> nested dict; values parsed as YAML."""
    nested: dict = {}
    for item in items:
        text = item.removeprefix("--")
        if "=" not in text:
            raise ConfigError(f"override {item!r}: expected --section.key=value")
        key, raw = text.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: {err}") from err
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is set to a value and a section")
        node[parts[-1]] = value
    return nested


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """YAML file (defaults for every key it sets) + overrides (win) -> dataclass ``cls``."""
    data: dict = {}
    where = "config"
    if path is not None:
        where = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError as err:
            raise ConfigError(f"{path}: config file not found") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data = loaded or {}
    data = _canonical(cls, data, where)
    extra = _canonical(cls, parse_overrides(overrides or []), "overrides")
    if extra:
        where = f"{where} + overrides"
    return from_dict(cls, _merge(data, extra), where)


def save_config(config: Any, path: str | Path) -> None:
    """Write ``config`` (a config dataclass) as YAML that :func:`load_config` reads back."""
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def flatten(data: Any, prefix: str = "", keep_empty: bool = True) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; an empty mapping is a value of its own unless
    ``keep_empty`` is False (then it contributes no key)."""
    if not isinstance(data, dict):
        return {prefix[:-1]: data}
    out: dict[str, Any] = {}
    for key, item in data.items():
        if isinstance(item, dict) and (item or not keep_empty):
            out.update(flatten(item, f"{prefix}{key}.", keep_empty))
        else:
            out[f"{prefix}{key}"] = item
    return out


def config_differences(old: Any, new: Any, ignore: tuple[str, ...] = ()) -> list[str]:
    """``["key: old -> new", ...]`` for every dotted key whose value differs between two
    configs (dataclasses or plain nested dicts), keys in ``ignore`` (dotted) left out. Used to
    refuse reusing a run folder that was made with other settings."""

    before = flatten(old if isinstance(old, dict) else to_dict(old), keep_empty=False)
    after = flatten(new if isinstance(new, dict) else to_dict(new), keep_empty=False)
    keys = sorted(set(before) | set(after))
    return [
        f"{key}: {before.get(key, '<absent>')!r} -> {after.get(key, '<absent>')!r}"
        for key in keys
        if key not in ignore and before.get(key, "<absent>") != after.get(key, "<absent>")
    ]
