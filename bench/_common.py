"""What every benchmark shares: the model bundle, realistic transaction records, the machine, tables."""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import NoReturn

from fraudwatch.domain import scoring
from fraudwatch.domain.records import StreamRecord
from infra.invoke import DEFAULT_BUNDLE

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAINED_BUNDLE = DEFAULT_BUNDLE

START_EPOCH = 1_796_000_000.0
"""Where generated streams begin (late November 2026): fixed, so every run sees the same records."""
SHARD_ID = "shardId-000000000000"
SEQUENCE_BASE = 49_659_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000
"""Kinesis sequence numbers are 56-digit integers; the generated ones count up from here."""
TRANSACTIONS_PER_USER_PER_DAY = 6.0

CATEGORIES = (
    "grocery",
    "restaurants",
    "fuel",
    "transport",
    "pharmacy",
    "clothing",
    "entertainment",
    "utilities",
    "online_retail",
    "travel",
)
FRAUD_CATEGORIES = ("electronics", "jewelry", "gift_cards", "online_retail")
OFFSETS = (0, 0, 1, -5, -8, 2, 5.5)
"""Shoppers' UTC offsets in hours: timestamps carry them, and the hour-of-day feature reads them."""


# ---------------------------------------------------------------- the model bundle


@dataclass(frozen=True, slots=True)
class Bundle:
    """A model bundle directory and a line saying where it came from."""

    path: Path
    origin: str


def model_bundle() -> Bundle:
    """The training job's bundle when it loads with this code, else a synthetic one trained now."""
    from fraudwatch.adapters.model import load_model
    from fraudwatch.errors import BundleError

    try:
        model = load_model(TRAINED_BUNDLE)
    except BundleError as exc:
        path = _train_synthetic_bundle()
        return Bundle(
            path, f"synthetic bundle (200 trees, depth 6) in {path}; trained bundle unusable: {exc}"
        )
    return Bundle(TRAINED_BUNDLE, f"trained bundle {TRAINED_BUNDLE} (version {model.version})")


def _train_synthetic_bundle(rounds: int = 200, depth: int = 6) -> Path:
    """A Booster as large as a real one, trained on features of generated history; removed at exit."""
    import numpy as np
    import xgboost as xgb

    from fraudwatch.adapters.bundle import save_bundle
    from fraudwatch.domain.features import FEATURE_NAMES
    from training.bundle import compile_bundle

    rows, labels = labelled_feature_rows(TransactionStream(users=400, seed=11, fraud_rate=0.02), 40_000)
    noise = np.random.default_rng(3).random(len(labels)) < 0.005  # real labels are never clean
    y = np.asarray(labels, dtype=np.float32)
    y[noise] = 1.0 - y[noise]
    booster = xgb.train(
        {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "max_depth": depth,
            "eta": 0.1,
            "seed": 0,
            # one thread: on these 2-core machines, shared with other jobs, two threads train 7x slower
            "nthread": 1,
        },
        xgb.DMatrix(np.asarray(rows, dtype=np.float32), label=y, feature_names=list(FEATURE_NAMES)),
        num_boost_round=rounds,
    )
    bundle = Path(tempfile.mkdtemp(prefix="fraudwatch-bench-bundle-"))
    atexit.register(shutil.rmtree, bundle, ignore_errors=True)
    save_bundle(
        bundle, booster, {"flag": 0.5, "reject": 0.9}, {"version": f"bench-synthetic-{rounds}x{depth}"}
    )
    compile_bundle(bundle, booster)  # as training does
    return bundle


def labelled_feature_rows(stream: TransactionStream, n: int) -> tuple[list[tuple[float, ...]], list[bool]]:
    """Feature rows of `n` generated transactions, computed by the domain's own features, with labels."""
    from fraudwatch.domain.features import apply, features
    from fraudwatch.domain.profile import UserProfile
    from fraudwatch.domain.transaction import transaction_from_mapping

    profiles: dict[str, UserProfile] = {}
    rows, labels = [], []
    for body, is_fraud in stream.labelled(n):
        tx = transaction_from_mapping(body)
        profile = profiles.setdefault(tx.user_id, UserProfile(tx.user_id))
        rows.append(features(profile, None, tx))
        apply(profile, tx)
        labels.append(is_fraud)
    return rows, labels


# ---------------------------------------------------------------- transactions


@dataclass(frozen=True, slots=True)
class Shopper:
    """One card holder's habits."""

    user_id: str
    offset: timezone
    typical_amount: float
    currency: str
    merchants: tuple[str, ...]
    categories: tuple[str, ...]


class TransactionStream:
    """A time-ordered stream of card transactions as producers put them on Kinesis.

    Shoppers keep to their usual merchants, categories and amounts (about six transactions a day
    each); a `fraud_rate` share of records look like card theft: a new merchant in a risky category
    for many times the usual amount.
    """

    def __init__(
        self, users: int, *, seed: int = 0, fraud_rate: float = 0.01, start: float = START_EPOCH
    ) -> None:
        self._rng = random.Random(seed)
        self._fraud_rate = fraud_rate
        self.shoppers = [self._shopper(i) for i in range(users)]
        self.mean_gap = 86400.0 / (TRANSACTIONS_PER_USER_PER_DAY * users)
        """Seconds between two transactions of the stream, on average."""
        self._epoch = start
        self._count = 0

    def batch(self, size: int, distinct_users: int | None = None) -> list[StreamRecord]:
        """The next `size` records; with `distinct_users`, exactly that many users appear in them."""
        if distinct_users is None:
            chosen = [self._rng.choice(self.shoppers) for _ in range(size)]
        else:
            group = self._rng.sample(self.shoppers, distinct_users)
            chosen = group + [self._rng.choice(group) for _ in range(size - distinct_users)]
            self._rng.shuffle(chosen)
        return [self._record(shopper) for shopper in chosen]

    def batches(
        self, count: int, size: int = 100, distinct_users: int | None = None
    ) -> list[list[StreamRecord]]:
        """The next `count` batches."""
        return [self.batch(size, distinct_users) for _ in range(count)]

    def labelled(self, n: int) -> Iterable[tuple[dict[str, object], bool]]:
        """The next `n` transactions as decoded records, each with whether it is fraud."""
        for _ in range(n):
            yield self._transaction(self._rng.choice(self.shoppers))

    def _record(self, shopper: Shopper) -> StreamRecord:
        body, _ = self._transaction(shopper)
        self._count += 1
        return StreamRecord(
            shard_id=SHARD_ID,
            sequence_number=str(SEQUENCE_BASE + self._count),
            data=json.dumps(body).encode(),
            arrival_epoch=self._epoch + self._rng.uniform(0.05, 1.5),
        )

    def _transaction(self, shopper: Shopper) -> tuple[dict[str, object], bool]:
        rng = self._rng
        self._epoch += rng.expovariate(1.0 / self.mean_gap)
        is_fraud = rng.random() < self._fraud_rate
        if is_fraud:
            amount = shopper.typical_amount * rng.uniform(8.0, 40.0)
            merchant = f"m-{rng.randrange(100_000, 999_999)}"
            category = rng.choice(FRAUD_CATEGORIES)
        else:
            amount = rng.lognormvariate(math.log(shopper.typical_amount), 0.5)
            usual = rng.random() < 0.9
            merchant = rng.choice(shopper.merchants) if usual else f"m-{rng.randrange(2000):05d}"
            category = rng.choice(shopper.categories) if usual else rng.choice(CATEGORIES)
        local = datetime.fromtimestamp(self._epoch, shopper.offset)
        body: dict[str, object] = {
            "transaction_id": f"tx-{rng.getrandbits(64):016x}",
            "user_id": shopper.user_id,
            "merchant_id": merchant,
            "amount": round(min(amount, 900_000.0), 2),
            "currency": shopper.currency,
            "timestamp": local.isoformat(timespec="milliseconds"),
            "category": category,
            # extras real producers send; the contract ignores them
            "channel": rng.choice(("pos", "pos", "ecommerce", "contactless")),
            "country": "US" if shopper.currency == "USD" else "GB" if shopper.currency == "GBP" else "DE",
        }
        return body, is_fraud

    def _shopper(self, i: int) -> Shopper:
        rng = self._rng
        hours = rng.choice(OFFSETS)
        return Shopper(
            user_id=f"user-{i:05d}",
            offset=timezone(timedelta(hours=hours)),
            typical_amount=rng.lognormvariate(math.log(35.0), 0.7),
            currency=rng.choice(("USD", "USD", "USD", "EUR", "GBP")),
            merchants=tuple(f"m-{rng.randrange(2000):05d}" for _ in range(rng.randint(4, 15))),
            categories=tuple(rng.sample(CATEGORIES, rng.randint(2, 5))),
        )


# ---------------------------------------------------------------- the package as the layer ships it

COMPILE = REPO_ROOT / "layers" / "fraudwatch" / "compile.py"
COMPILED_BUILD = REPO_ROOT / "build" / "compiled"
"""The fraudwatch package with the scoring path compiled by mypyc, as the layer ships it (COMPILE)."""


DOMAIN_BUILDS = {
    "compiled": "the scoring path compiled by mypyc, as the layer ships it (layers/fraudwatch/compile.py)",
    "source": "the scoring path from its Python sources (--source)",
}
"""What `domain_build()` says, as a bench prints it."""


def domain_build() -> str:
    """How this process runs the scoring path: "compiled" (mypyc's extension modules) or "source"."""
    return "compiled" if (scoring.__file__ or "").endswith(".so") else "source"


def compiled_environment() -> dict[str, str]:
    """This process's environment with COMPILED_BUILD first on the path, built now unless it is of the
    current sources already (about 20 s to build)."""
    sources = sorted((REPO_ROOT / "layers" / "fraudwatch" / "python").rglob("*.py"))
    digest = hashlib.sha256()
    for path in [COMPILE, *sources]:
        digest.update(path.read_bytes())
    stamp = COMPILED_BUILD / ".sources"
    if not stamp.exists() or stamp.read_text() != digest.hexdigest():
        print("building the scoring path with mypyc as the layer ships it (layers/fraudwatch/compile.py)")
        built = subprocess.run(
            [sys.executable, str(COMPILE), str(COMPILED_BUILD)], capture_output=True, text=True
        )
        if built.returncode != 0:
            raise SystemExit(
                f"layers/fraudwatch/compile.py failed:\n{built.stdout[-2000:]}{built.stderr[-3000:]}"
            )
        stamp.write_text(digest.hexdigest())
    paths = [str(COMPILED_BUILD), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}


def rerun_compiled(module: str, argv: Sequence[str]) -> NoReturn:
    """Replace this process with `python -m module argv` on COMPILED_BUILD."""
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], compiled_environment())


# ---------------------------------------------------------------- reporting


def machine() -> str:
    """The machine and interpreter, as docs/benchmarks.md records them."""
    model = "unknown CPU"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    # the machines are shared: a load above the core count slows every figure down
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores, {ram_gb:.0f} GB RAM, "
        f"Python {platform.python_version()}, {now}, load average {load}"
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain text table, numbers right-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append(
            "  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths, strict=True))
        )
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _numeric(text: str) -> bool:
    return text.lstrip("+-").replace(",", "").replace(".", "").replace("x", "").isdigit()


def stream_parser(description: str, *, batches: int, repeats: str) -> argparse.ArgumentParser:
    """A bench's options for the generated stream: users, timed and warm-up batches, passes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--users", type=int, default=60, help="distinct card holders (default 60)")
    parser.add_argument(
        "--batches", type=int, default=batches, help=f"timed batches of 100 (default {batches})"
    )
    parser.add_argument("--warmup-batches", type=int, default=30, help="untimed, to build profiles")
    parser.add_argument("--repeats", type=int, default=7, help=f"{repeats} (default 7)")
    return parser


def median(values: Sequence[float]) -> float:
    """The median."""
    return statistics.median(values)


def p90(values: Sequence[float]) -> float:
    """The 90th percentile (inclusive method, so ten samples give a value between the top two)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


def verdict(value: float, budget: float) -> str:
    """'within budget' or by how much it is over."""
    return "within budget" if value <= budget else f"OVER budget by {value - budget:,.1f}"
