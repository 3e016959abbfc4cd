"""Each function imports with the packages its layers carry, not with the development environment's.

The tests run where everything is installed, so a handler that imports numpy without the ML runtime
layer passes them all and fails on AWS at its first cold start. Here each function's handler module is
imported in a fresh interpreter in which what its layers do not carry cannot be imported.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.template import REPO_ROOT, load_template, resources_of_type

ML_RUNTIME = ("numpy", "scipy", "xgboost", "tl2cgen")
"""The ML runtime layer's packages (layers/ml-runtime)."""
IN_NO_LAYER = ("pandas", "sklearn", "treelite", "training", "infra")
"""Installed for development and training, shipped in no layer."""

TEMPLATE = load_template()
FUNCTIONS = resources_of_type(TEMPLATE, "AWS::Serverless::Function")


def _layers(props: dict[str, Any]) -> set[str]:
    return {layer["Ref"] for layer in props.get("Layers", [])}


def _value(key: str, value: Any) -> str:
    """An environment variable's value: as written, a parameter's default, or a stand-in for a resource's
    name, ARN or URL."""
    if isinstance(value, str):
        return value
    parameter = TEMPLATE["Parameters"].get(value.get("Ref", ""), {}) if isinstance(value, dict) else {}
    if "Default" in parameter:
        return str(parameter["Default"])
    if key.endswith("_ARN"):
        return "arn:aws:sns:us-east-1:123456789012:stand-in"
    if key.endswith("_URL"):
        return "https://sqs.us-east-1.amazonaws.com/123456789012/stand-in"
    return f"stand-in-{key.lower().replace('_', '-')}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_the_function_imports_with_its_layers_only(name: str, tiny_bundle: Path) -> None:
    props = FUNCTIONS[name]["Properties"]
    unavailable = IN_NO_LAYER + (() if "MlRuntimeLayer" in _layers(props) else ML_RUNTIME)
    module, _ = props["Handler"].rsplit(".", 1)
    paths = [str(REPO_ROOT / props["CodeUri"]), str(REPO_ROOT / "layers/fraudwatch/python")]
    variables = props.get("Environment", {}).get("Variables", {})
    environment = {key: _value(key, value) for key, value in variables.items()}
    environment["MODEL_DIR"] = str(tiny_bundle)  # the model layer's /opt/bundle
    code = (
        "import os, sys\n"
        f"for name in {unavailable!r}: sys.modules[name] = None\n"
        f"os.environ.update({environment!r})\n"
        f"sys.path[:0] = {paths!r}\n"
        f"import {module}\n"
    )
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, env=env, check=False, cwd="/"
    )
    assert done.returncode == 0, f"{name} cannot import {module} with its layers: {done.stderr[-1500:]}"
