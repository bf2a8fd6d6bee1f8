"""JSON records as dataclasses: one typed owner per file, read leniently and written with the same keys.

A reader takes what it knows: a key the dataclass does not have (written by a newer version or another tool) is
ignored and a key the file lacks (an older version) takes the field's default, so a record can grow a field without
breaking the runs already on disk. Fields marked ``OMIT_IF_NONE`` are left out of the JSON while they are None,
for sections that a run writes only when it has them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from engagement.errors import UserError
from engagement.files import write_atomic

T = TypeVar("T")
OMIT_IF_NONE = {"omit_if_none": True}


def from_json(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from parsed JSON: unknown keys ignored, missing keys defaulted."""
    label = where or cls.__name__
    if not isinstance(data, dict):
        raise UserError(f"{label}: expected a JSON object, got {type(data).__name__}")
    hints = _type_hints(cls)
    return cls(**{field.name: _value(hints[field.name], data[field.name], f"{label}.{field.name}")
                  for field in dataclasses.fields(cls) if field.name in data})


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a dataclass: resolving them is most of the time a read takes, and they never change."""
    return typing.get_type_hints(cls)


def _value(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        return None
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in args if arg is not type(None)]
        return _value(inner[0], value, where) if len(inner) == 1 else value
    if origin is dict and isinstance(value, dict):
        key_type, item_type = args
        return {_key(key_type, key): _value(item_type, item, f"{where}[{key}]") for key, item in value.items()}
    if origin is list and isinstance(value, list):
        return [_value(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _key(key_type: Any, key: str) -> Any:
    """JSON object keys are strings; ``dict[int, ...]`` fields get their ints back."""
    return int(key) if key_type is int else key


def to_json(value: Any) -> Any:
    """Plain JSON data of a dataclass (nested ones, lists and dicts included), with the field names as keys."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_json(getattr(value, field.name)) for field in dataclasses.fields(value)
                if not (field.metadata.get("omit_if_none") and getattr(value, field.name) is None)}
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object; a missing, unreadable or malformed one is a UserError."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def write_json(path: Path, data: Any) -> Path:
    """Write a record (or plain data) as indented JSON, atomically."""
    text = json.dumps(to_json(data), indent=2, default=str) + "\n"
    return write_atomic(path, lambda stream: stream.write(text.encode("utf-8")))
