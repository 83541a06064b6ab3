"""Config machinery: pydantic models loaded from YAML, dotted ``key=value`` overrides,
unknown keys rejected with their dotted path, the resolved config written to a run folder.

Each pipeline defines its own models (``StrictModel`` subclasses) next to the code that
uses them; this module only loads, overrides, validates and saves them."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Sequence, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from medssl.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def _crop_size(value: Any) -> Any:
    return (value, value, value) if isinstance(value, int) else value


# Crop and window sizes in voxels: an integer n means (n, n, n).
CropSize = Annotated[tuple[int, int, int], BeforeValidator(_crop_size)]


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
    # old key -> new dotted key (relative to this section); an old spelling is refused with a hint
    renamed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            old = [k for k in data if k in cls.renamed]
            if old:
                raise ValueError("; ".join(f"'{k}' was renamed to '{cls.renamed[k]}'" for k in old))
        return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.max_steps=40"`` -> (["train", "max_steps"], 40). Values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Set dotted keys in a nested dict (in place) and return it."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return data


def _format_validation_error(err: ValidationError, model: type[BaseModel], origin: str) -> str:
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            sibling = _fields_at(model, item["loc"][:-1])
            close = difflib.get_close_matches(str(item["loc"][-1]), sibling, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"unknown key '{loc}'{hint}")
        else:
            lines.append(f"'{loc}': {item['msg']}")
    return f"{origin}: " + "; ".join(lines)


def _fields_at(model: type[BaseModel], loc: Sequence) -> list[str]:
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        current = fields[part].annotation
    fields = getattr(current, "model_fields", None)
    return list(fields) if fields else []


def validate_config(model: type[M], data: dict, origin: str = "config") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, model, origin)) from None


def load_config(model: type[M], path: str | Path | None, overrides: Sequence[str] = ()) -> M:
    """Load YAML (or start from defaults when ``path`` is None), apply overrides, validate."""
    data: dict = {}
    origin = "config"
    if path is not None:
        path = Path(path)
        origin = path.name
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path.name}: not valid YAML ({err.__class__.__name__})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path.name}: top level must be a mapping")
    apply_overrides(data, overrides)
    return validate_config(model, data, origin)


def config_to_dict(cfg: BaseModel) -> dict:
    """Plain JSON-able data (paths as strings): what goes into checkpoints and run folders."""
    return json.loads(cfg.model_dump_json())


def save_config(cfg: BaseModel, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    tmp.replace(path)
    return path
