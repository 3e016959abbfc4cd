"""Unzipped size of the scoring function and its layers, against the budget and Lambda's hard limit.

Reads what `sam build` left in .aws-sam/build; with --rebuild (or when that is missing) it runs each
layer's own Makefile target into a scratch directory, exactly as `sam build` does. Lambda counts the
unzipped size of the function plus all its layers against 250 MB (262,144,000 bytes, so MB here means
2**20 bytes). Exits 1 above that limit; the ML runtime's 100 MB budget (DESIGN.md) is reported, not fatal.

    .venv/bin/python bench/layer_size.py [--rebuild] [--build-dir .aws-sam/build]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parent.parent
MB = 2**20
ML_RUNTIME_BUDGET_MB = 100
LAMBDA_LIMIT_MB = 250
# logical id -> the directory sam builds it from (template.yaml's CodeUri / ContentUri)
LAYERS = {
    "MlRuntimeLayer": REPO_ROOT / "layers/ml-runtime",
    "FraudwatchLayer": REPO_ROOT / "layers/fraudwatch",
    "ModelLayer": REPO_ROOT / "layers/model",
}
FUNCTION = "ScoringFunction"


def tree_size(root: Path) -> int:
    """Bytes of every regular file under root, as they would be unzipped (links not followed)."""
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def build_layers(target: Path) -> None:
    """Run each layer's `build-<LogicalId>` target into target/<LogicalId>, as `sam build` would."""
    for logical_id, source in tqdm(LAYERS.items(), desc="building layers", unit="layer"):
        artifacts = target / logical_id
        artifacts.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                "make",
                "-s",
                "-f",
                str(source / "Makefile"),
                f"build-{logical_id}",
                f"ARTIFACTS_DIR={artifacts}",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            last = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["(no output)"]
            raise SystemExit(f"building {logical_id} failed: {last[0]}")


def sizes(build_dir: Path) -> dict[str, int]:
    """Unzipped bytes of the function and each layer in a build directory."""
    found = {
        FUNCTION: tree_size(
            build_dir / FUNCTION if (build_dir / FUNCTION).is_dir() else REPO_ROOT / "functions/scoring"
        )
    }
    for logical_id in LAYERS:
        if not (build_dir / logical_id).is_dir():
            raise SystemExit(f"{build_dir / logical_id} is missing: run `make sam-build` or pass --rebuild")
        found[logical_id] = tree_size(build_dir / logical_id)
    return found


def report(found: dict[str, int]) -> int:
    """Print the sizes against the budget and the limit; the exit code is 1 above the hard limit."""
    total = sum(found.values())
    ml_runtime = found["MlRuntimeLayer"] / MB
    lines = [f"{name:<16} {size / MB:8.1f} MB" for name, size in found.items()]
    lines.append(
        f"{'total':<16} {total / MB:8.1f} MB   (Lambda limit {LAMBDA_LIMIT_MB} MB, function + all layers)"
    )
    verdict = "within" if ml_runtime <= ML_RUNTIME_BUDGET_MB else "OVER"
    lines.append(f"ML runtime layer {ml_runtime:8.1f} MB   {verdict} the {ML_RUNTIME_BUDGET_MB} MB budget")
    sys.stdout.write("\n".join(lines) + "\n")
    if total > LAMBDA_LIMIT_MB * MB:
        sys.stderr.write(
            f"function + layers are {total / MB:.1f} MB, above Lambda's {LAMBDA_LIMIT_MB} MB limit\n"
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Measure, building first when asked or when there is nothing built."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--build-dir", type=Path, default=REPO_ROOT / ".aws-sam/build", help="sam build's output"
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="build the layers afresh into a scratch directory"
    )
    args = parser.parse_args(argv)
    if not args.rebuild and all((args.build_dir / name).is_dir() for name in LAYERS):
        return report(sizes(args.build_dir))
    with tempfile.TemporaryDirectory(prefix="fraudwatch-layers-") as scratch:
        build_layers(Path(scratch))
        return report(sizes(Path(scratch)))


if __name__ == "__main__":
    sys.exit(main())
