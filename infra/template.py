"""Reading template.yaml: YAML with CloudFormation's short-form tags turned into their long form.

`!Ref X` becomes `{"Ref": "X"}`, `!GetAtt A.B` becomes `{"Fn::GetAtt": ["A", "B"]}`, `!Sub ...`
becomes `{"Fn::Sub": ...}` and so on, exactly as CloudFormation reads them, so the result can be
handed to the SAM translator or walked by anything that needs a name, a key schema or a setting.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template.yaml"

# Every short-form tag CloudFormation accepts; `!Ref` and `!Condition` are not `Fn::` functions.
_FUNCTIONS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
)


class TemplateLoader(yaml.SafeLoader):
    """A safe YAML loader that understands CloudFormation's short-form intrinsic functions."""


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node.tag}", node.start_mark)


def _function(name: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        return {name: _construct(loader, node)}

    return construct


def _get_att(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    value = _construct(loader, node)
    if isinstance(value, str):
        # `!GetAtt Resource.Attribute.With.Dots`: only the first dot separates the resource.
        resource, _, attribute = value.partition(".")
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


for _name in _FUNCTIONS:
    TemplateLoader.add_constructor(f"!{_name}", _function(f"Fn::{_name}"))
TemplateLoader.add_constructor("!Ref", _function("Ref"))
TemplateLoader.add_constructor("!Condition", _function("Condition"))
TemplateLoader.add_constructor("!GetAtt", _get_att)


# CloudFormation has no dates: `2010-09-09` unquoted is the string it looks like.
def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(_construct(loader, node))


TemplateLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def loads_template(text: str) -> dict[str, Any]:
    """Parse template text (YAML or JSON) into CloudFormation's long form."""
    doc = yaml.load(text, Loader=TemplateLoader)  # noqa: S506  # nosec B506  # a SafeLoader subclass
    if not isinstance(doc, dict) or "Resources" not in doc:
        raise ValueError("not a CloudFormation template: no top-level Resources")
    return doc


@cache
def _load_cached(path: Path, mtime_ns: int) -> dict[str, Any]:
    return loads_template(path.read_text())


def load_template(path: Path | str = TEMPLATE) -> dict[str, Any]:
    """Load a template file; callers get their own copy, safe to modify."""
    resolved = Path(path).resolve()
    return copy.deepcopy(_load_cached(resolved, resolved.stat().st_mtime_ns))


def resources_of_type(doc: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in doc.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }
