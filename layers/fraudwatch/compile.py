"""The fraudwatch package as the layer ships it: its sources, and the scoring path's domain modules
compiled with mypyc beside them.

Usage: python compile.py OUT

Copies the package (without __pycache__) into OUT/fraudwatch and builds each module of COMPILED there as
an extension module next to its source; Python imports an extension module before a source of the same
name, so with OUT first on sys.path the scoring path runs compiled and everything else as source. The
modules are the ones a record goes through, pure Python and strictly typed: mypyc turns their attribute
reads, comparisons and calls into C, a fifth of the real handler's instructions a record (docs/
benchmarks.md, "Issue 17, fourth pass"). mypyc checks at run time the types mypy checks statically, so a
value that contradicts an annotation raises TypeError there: `make test` runs the scoring tests again on
this build.

Only a Linux x86_64 CPython 3.12, the Lambda runtime's, builds them: elsewhere (a Mac deploying to AWS)
the package is copied as source only, and says so. Needs mypy and setuptools (the layer's
requirements-build.txt) and a C compiler with Python's headers.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

COMPILED = (
    "records",
    "transaction",
    "label",
    "activity",
    "events",
    "decision",
    "profile",
    "merchant",
    "features",
    "scoring",
)
"""The modules of fraudwatch.domain compiled: a stream record's path from its bytes to its decision."""

SOURCE = Path(__file__).resolve().parent / "python" / "fraudwatch"


def main(argv: list[str]) -> int:
    """Copy the package into OUT and build the compiled modules there; the usage when called otherwise."""
    if len(argv) != 1 or argv[0].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    out = Path(argv[0]).resolve()
    target = (platform.system(), platform.machine(), sys.implementation.name, sys.version_info[:2])
    compiling = target == ("Linux", "x86_64", "cpython", (3, 12))
    # Built apart: mypy would take whatever else `out` holds (a layer's packages) for the project's modules.
    with tempfile.TemporaryDirectory(prefix="fraudwatch-mypyc-") as scratch:
        work = Path(scratch) / "work"
        shutil.copytree(SOURCE, work / "fraudwatch", ignore=shutil.ignore_patterns("__pycache__"))
        if compiling:
            build(work, Path(scratch) / "build")
        shutil.rmtree(out / "fraudwatch", ignore_errors=True)
        for stale in out.glob("*__mypyc.*"):
            stale.unlink()
        out.mkdir(parents=True, exist_ok=True)
        # The package, and mypyc's runtime, which its modules share.
        for path in [work / "fraudwatch", *work.glob("*__mypyc.*")]:
            shutil.move(path, out / path.name)
    if not compiling:
        print(
            f"compile.py: fraudwatch copied as source only: {target} is not the Lambda runtime's",
            file=sys.stderr,
        )
    return 0


def build(work: Path, scratch: Path) -> None:
    """Build COMPILED in place under `work`, which holds a copy of the package and nothing else."""
    from mypyc.build import mypycify
    from setuptools import setup

    paths = [f"fraudwatch/domain/{name}.py" for name in COMPILED]
    here = Path.cwd()
    os.chdir(work)  # mypyc names the modules by their paths from here
    try:
        setup(
            name="fraudwatch-compiled",
            ext_modules=mypycify(["--ignore-missing-imports", *paths], target_dir=str(scratch)),
            script_args=["--quiet", "build_ext", "--inplace", "--build-temp", str(scratch)],
        )
    finally:
        os.chdir(here)
    missing = [name for name in COMPILED if not any((work / "fraudwatch" / "domain").glob(f"{name}.*.so"))]
    if missing:
        raise SystemExit(f"compile.py: mypyc built no extension for {', '.join(missing)}")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
