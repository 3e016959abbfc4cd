"""`python -m fraudwatch`: the command line (infra.cli), where `make setup` installed it.

The Lambda layer carries this package without the command line; there this says so instead of failing
with an import error.
"""

import sys

try:
    from infra.cli import main
except ModuleNotFoundError as exc:  # the layer alone: the command line lives in the repository
    sys.exit(f"python -m fraudwatch: the command line is not installed here ({exc}); run `make setup`")

sys.exit(main(prog="python -m fraudwatch"))
