"""The model registry: bundles by version in S3, and which of them score, in DynamoDB.

Why an S3 bucket and not layer versions: a layer version is bound to a function at deploy time, so
switching models through layers is a deploy (UpdateFunctionConfiguration, a new cold start everywhere,
SnapStart's snapshot taken again); a bucket holds any number of versions, each with its model card, and a
function fetches the one it is told to at run time. The bucket is versioned and encrypted
(template.yaml: ModelsBucket), and a version's files are never overwritten (`publish` refuses another
bundle under a version it holds).

Layout. ModelsBucket: `models/<version>/<file>` for each file of the bundle (adapters/bundle.py), its
compiled model included when it has one (a version published without it is fetched without it, and
scores with XGBoost).
ModelsTable (key `item`): `version#<version>` per published version (who, when, the model's digest, its
thresholds and test figures), `lineup` (the champion and challenger in force, the `seq` of the change
that made them so) and `lineup#<seq>` per change (who, when, what, why), the history rollback walks.
A champion of "" is the bundle of the function's own model layer: before the first promotion, and after
rolling that promotion back, the functions score with what was deployed.

The functions read `lineup` (one GetItem) at most every `max_age` seconds (MODELS_MAX_AGE_SECONDS, 15
by default): a promotion or rollback takes effect within that, plus a batch. A version seen for the
first time is fetched into /tmp once per container (six GetObjects: four files and the compiled model's
two, absent or not) and loaded; versions no longer in
the lineup are dropped. A read or fetch that fails keeps the lineup in force and is tried again after
`retry_after` seconds; a version that cannot be loaded here (corrupt, or built for other features) is
refused, logged, and the lineup in force kept until the pointer changes again; so is one whose
thresholds the deploy-time override (FLAG_THRESHOLD, REJECT_THRESHOLD) would make inconsistent.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from fraudwatch.adapters.aws import call_failed
from fraudwatch.adapters.bundle import BUNDLE_FILES, CARD_MARKDOWN, COMPILED_FILES, read_bundle, read_card
from fraudwatch.adapters.model import load_model
from fraudwatch.domain.decision import Thresholds
from fraudwatch.domain.drift import Reference
from fraudwatch.domain.lineup import Lineup
from fraudwatch.domain.ports import Model
from fraudwatch.errors import AwsCallError, BundleError, ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

DEFAULT_MAX_AGE = 15.0
RETRY_AFTER = 5.0
LINEUP = "lineup"
PREFIX = "models"
LAYER = ""
"""The champion that is the function's own model layer."""
MISSING_OBJECT = frozenset({"NoSuchKey", "AccessDenied"})
VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""What a version may be: it names S3 keys and a directory under /tmp."""

logger = logging.getLogger("fraudwatch.registry")


class ModelRegistryError(AwsCallError):
    """The models bucket or table could not be read or written."""


class VersionInfo(NamedTuple):
    """A published version: who published it, when, and what its card says in a line."""

    version: str
    published_by: str
    published_at: float
    digest: str
    """sha256 of its model file: the content the version names."""
    thresholds: Thresholds
    summary: str
    """The card's test figures, or "" when it has none."""


class LineupState(NamedTuple):
    """The versions in force ("" champion: the layer's bundle; "" challenger: none) and the change that
    put them there."""

    champion: str
    challenger: str
    seq: int
    changed_by: str
    changed_at: float
    action: str
    note: str


NO_LINEUP = LineupState(LAYER, "", 0, "", 0.0, "", "")


class ModelRegistry:
    """Bundles in the bucket and the lineup in the table: what the command line and the functions share."""

    def __init__(
        self,
        bucket: str,
        table: str,
        *,
        s3: S3Client | None = None,
        dynamodb: DynamoDBClient | None = None,
    ) -> None:
        self.bucket = bucket
        self.table = table
        self._s3 = s3 or boto3.client("s3")
        self._dynamodb = dynamodb or boto3.client("dynamodb")

    # ---------------------------------------------------------------- versions

    def publish(self, bundle_dir: Path, *, published_by: str, now: float) -> VersionInfo:
        """Upload a bundle under its version; the same bundle again changes nothing, another one under the
        same version is refused (BundleError). Raises BundleError for a bundle this code cannot load."""
        contents = read_bundle(bundle_dir)
        checked_version(contents.version)
        # a bundle the functions would refuse is refused here, before anyone relies on it
        load_model(bundle_dir)
        digest = hashlib.sha256(contents.model_file.read_bytes()).hexdigest()
        known = self.version(contents.version)
        if known is not None:
            if known.digest != digest:
                raise BundleError(
                    f"version {contents.version} is already published with another model "
                    f"(sha256 {known.digest[:12]}): versions are never overwritten"
                )
            return known
        for name in (*BUNDLE_FILES, *COMPILED_FILES, CARD_MARKDOWN):
            path = bundle_dir / name
            if path.is_file():
                self._put(f"{PREFIX}/{contents.version}/{name}", path.read_bytes())
        info = VersionInfo(
            contents.version, published_by, now, digest, contents.thresholds, _summary(read_card(bundle_dir))
        )
        self._call(
            "PutItem",
            lambda: self._dynamodb.put_item(
                TableName=self.table,
                Item=_version_item(info),
                ConditionExpression="attribute_not_exists(#item)",
                ExpressionAttributeNames={"#item": "item"},
            ),
        )
        return info

    def version(self, version: str) -> VersionInfo | None:
        """One published version, or None."""
        response = self._call(
            "GetItem",
            lambda: self._dynamodb.get_item(
                TableName=self.table, Key={"item": {"S": f"version#{version}"}}, ConsistentRead=True
            ),
        )
        item = response.get("Item")
        return None if item is None else _version_of(item)

    def versions(self) -> list[VersionInfo]:
        """Every published version, oldest first."""
        found = [_version_of(i) for i in self._scan() if i["item"]["S"].startswith("version#")]
        return sorted(found, key=lambda v: (v.published_at, v.version))

    def fetch(self, version: str, into: Path) -> Path:
        """Download a version's bundle into `into/<version>` (written aside, then renamed in at once)."""
        target = into / checked_version(version)
        if target.is_dir():
            return target
        into.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=into))
        try:
            for name in BUNDLE_FILES:
                (staging / name).write_bytes(self._get(f"{PREFIX}/{version}/{name}"))
            for name in COMPILED_FILES:  # absent from versions published without a compiled model
                body = self._get_optional(f"{PREFIX}/{version}/{name}")
                if body is not None:
                    (staging / name).write_bytes(body)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    # ---------------------------------------------------------------- lineup

    def lineup(self) -> LineupState:
        """The lineup in force (NO_LINEUP before the first change)."""
        response = self._call(
            "GetItem",
            lambda: self._dynamodb.get_item(
                TableName=self.table, Key={"item": {"S": LINEUP}}, ConsistentRead=True
            ),
        )
        item = response.get("Item")
        return NO_LINEUP if item is None else _lineup_of(item)

    def history(self) -> list[LineupState]:
        """Every change of the lineup, oldest first."""
        found = [_lineup_of(i) for i in self._scan() if i["item"]["S"].startswith(f"{LINEUP}#")]
        return sorted(found, key=lambda state: state.seq)

    def change(
        self,
        before: LineupState,
        *,
        champion: str,
        challenger: str,
        by: str,
        now: float,
        action: str,
        note: str,
    ) -> LineupState:
        """Put a new lineup in force if `before` is still the one in force, and record it in the history;
        the champion and challenger of `before` again change nothing: no write, and `before` is returned
        (a history entry is a change, never a repeat).

        Both writes are one transaction, conditional on the lineup's `seq`: two operators changing it at
        once cannot both win (the loser gets ModelRegistryError, code TransactionCanceledException)."""
        if (champion, challenger) == (before.champion, before.challenger):
            return before
        after = LineupState(champion, challenger, before.seq + 1, by, now, action, note)
        in_force: dict[str, Any] = {"TableName": self.table, "Item": _lineup_item(after, LINEUP)}
        if before.seq == 0:
            in_force["ConditionExpression"] = "attribute_not_exists(#item)"
            in_force["ExpressionAttributeNames"] = {"#item": "item"}
        else:
            in_force["ConditionExpression"] = "#seq = :seq"
            in_force["ExpressionAttributeNames"] = {"#seq": "seq"}
            in_force["ExpressionAttributeValues"] = {":seq": {"N": str(before.seq)}}
        record = {"TableName": self.table, "Item": _lineup_item(after, f"{LINEUP}#{after.seq:08d}")}
        self._call(
            "TransactWriteItems",
            lambda: self._dynamodb.transact_write_items(
                TransactItems=[{"Put": in_force}, {"Put": record}]  # type: ignore[typeddict-item]
            ),
        )
        return after

    # ---------------------------------------------------------------- calls

    def _put(self, key: str, body: bytes) -> None:
        self._call("PutObject", lambda: self._s3.put_object(Bucket=self.bucket, Key=key, Body=body))

    def _get(self, key: str) -> bytes:
        return self._call(
            "GetObject", lambda: self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        )

    def _get_optional(self, key: str) -> bytes | None:
        """An object that may be absent: None then. Without s3:ListBucket (the functions' roles have none)
        S3 answers AccessDenied, not NoSuchKey, for a key that does not exist."""
        try:
            return self._get(key)
        except ModelRegistryError as exc:
            if exc.code in MISSING_OBJECT:
                return None
            raise

    def _scan(self) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"TableName": self.table}
        while True:
            page = self._call("Scan", lambda: self._dynamodb.scan(**kwargs))
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _call[T](self, operation: str, call: Callable[[], T]) -> T:
        resource = self.bucket if operation.endswith("Object") else self.table
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            raise call_failed(ModelRegistryError, exc, operation=operation, resource=resource) from exc


def checked_version(version: str) -> str:
    """The version, if it is one the registry can hold; BundleError naming it otherwise."""
    if not VERSION.fullmatch(version):
        raise BundleError(
            f"model version {version!r}: letters, digits, '.', '_' and '-' only, at most 128, "
            "starting with a letter or a digit"
        )
    return version


class Member(NamedTuple):
    """A loaded version: the model and its training distributions (None in bundles made before drift)."""

    model: Model
    reference: Reference | None


def load_member(bundle_dir: Path) -> Member:
    """A bundle loaded for scoring, with its reference distribution."""
    return Member(load_model(bundle_dir), read_bundle(bundle_dir).reference)


class RegistryModels:
    """The lineup in force for the scoring service (domain/lineup.py's ModelSource), read again at most
    every `max_age` seconds; the layer's bundle (`fallback`) is the champion when the registry names none."""

    def __init__(
        self,
        registry: ModelRegistry,
        fallback: Member,
        *,
        thresholds: Callable[[Thresholds], Thresholds],
        cache_dir: Path,
        max_age: float = DEFAULT_MAX_AGE,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._fallback = fallback
        self._thresholds = thresholds
        self._cache_dir = cache_dir
        self._max_age = max_age
        self._retry_after = retry_after
        self._clock = clock
        self._members: dict[str, Member] = {}
        self._wanted = (LAYER, "")
        self._refused: tuple[str, str] | None = None
        self._lineup = self._lineup_of(fallback, None)
        self._next_read = float("-inf")
        self.read_errors = 0

    def current(self) -> Lineup:
        """The cached lineup, read again first if it is older than `max_age`."""
        now = self._clock()
        if now >= self._next_read:
            self._read(now)
        return self._lineup

    def rewired(self, registry: ModelRegistry) -> RegistryModels:
        """The same lineup and loaded versions, read through another registry's clients (new connections
        and credentials after a SnapStart restore): nothing is fetched or loaded again, but the lineup is
        read again at the next batch, since the snapshot's may be days old."""
        twin = copy.copy(self)
        twin._registry = registry
        twin._members = dict(self._members)
        twin._next_read = float("-inf")
        return twin

    def _read(self, now: float) -> None:
        self._next_read = now + self._retry_after
        try:
            state = self._registry.lineup()
        except ModelRegistryError as exc:
            self._failed("lineup not read: keeping the one in force", exc)
            return
        wanted = (state.champion, state.challenger)
        if wanted not in (self._wanted, self._refused):
            try:
                members = {version: self._member(version) for version in wanted if version}
                champion = members.get(state.champion, self._fallback)
                lineup = self._lineup_of(champion, members.get(state.challenger))
            except ModelRegistryError as exc:
                self._failed("model not fetched: keeping the lineup in force", exc)
                return
            except ConfigurationError as exc:  # a bundle it cannot load, or thresholds the override breaks
                self._refused = wanted
                logger.error(
                    "lineup refused: keeping the one in force",
                    extra={"champion": state.champion, "challenger": state.challenger, "error": str(exc)},
                )
                self._next_read = now + self._max_age
                return
            self._lineup, self._members, self._wanted = lineup, members, wanted
            logger.info(
                "lineup in force",
                extra={"champion": champion.model.version, "challenger": state.challenger, "seq": state.seq},
            )
        self._next_read = now + self._max_age

    def _member(self, version: str) -> Member:
        if version == self._fallback.model.version:
            return self._fallback
        if version in self._members:
            return self._members[version]
        return load_member(self._registry.fetch(version, self._cache_dir))

    def _lineup_of(self, champion: Member, challenger: Member | None) -> Lineup:
        return Lineup(
            champion.model,
            self._thresholds(champion.model.thresholds),
            None if challenger is None else challenger.model,
            None if challenger is None else self._thresholds(challenger.model.thresholds),
            champion.reference,
        )

    def _failed(self, message: str, exc: ModelRegistryError) -> None:
        self.read_errors += 1
        logger.warning(
            message,
            extra={
                "operation": exc.operation,
                "code": exc.code,
                "model_version": self._lineup.champion.version,
            },
        )


def _summary(card: dict[str, Any]) -> str:
    test = card.get("metrics", {}).get("test", {})
    if "roc_auc" not in test:
        return ""
    return f"test ROC AUC {test['roc_auc']:.4f}, average precision {test['average_precision']:.4f}"


def _version_item(info: VersionInfo) -> dict[str, Any]:
    return {
        "item": {"S": f"version#{info.version}"},
        "version": {"S": info.version},
        "published_by": {"S": info.published_by},
        "published_at": {"N": repr(info.published_at)},
        "digest": {"S": info.digest},
        "flag_threshold": {"N": repr(info.thresholds.flag)},
        "reject_threshold": {"N": repr(info.thresholds.reject)},
        "summary": {"S": info.summary},
    }


def _version_of(item: dict[str, Any]) -> VersionInfo:
    return VersionInfo(
        item["version"]["S"],
        item["published_by"]["S"],
        float(Decimal(item["published_at"]["N"])),
        item["digest"]["S"],
        Thresholds(float(item["flag_threshold"]["N"]), float(item["reject_threshold"]["N"])),
        item.get("summary", {}).get("S", ""),
    )


def _lineup_item(state: LineupState, key: str) -> dict[str, Any]:
    return {
        "item": {"S": key},
        "champion": {"S": state.champion},
        "challenger": {"S": state.challenger},
        "seq": {"N": str(state.seq)},
        "changed_by": {"S": state.changed_by},
        "changed_at": {"N": repr(state.changed_at)},
        "action": {"S": state.action},
        "note": {"S": state.note},
    }


def _lineup_of(item: dict[str, Any]) -> LineupState:
    return LineupState(
        item["champion"]["S"],
        item["challenger"]["S"],
        int(item["seq"]["N"]),
        item["changed_by"]["S"],
        float(Decimal(item["changed_at"]["N"])),
        item["action"]["S"],
        item.get("note", {}).get("S", ""),
    )
