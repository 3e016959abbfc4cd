"""The model registry on moto: publishing versions, changing the lineup with its history, the functions'
cached read of it, and the drift table's counts."""

import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from fraudwatch.adapters.bundle import CARD_FILE, COMPILED_FILES, COMPILED_LIBRARY, read_bundle
from fraudwatch.adapters.drift import DriftStore
from fraudwatch.adapters.model import XGBoostModel
from fraudwatch.adapters.registry import (
    NO_LINEUP,
    ModelRegistry,
    ModelRegistryError,
    RegistryModels,
    load_member,
)
from fraudwatch.domain.decision import Thresholds
from fraudwatch.domain.drift import COLUMNS, SLOTS
from fraudwatch.errors import BundleError, ConfigurationError, UsageError
from infra.models import challenge, promote, rollback
from tests.adapters.conftest import create_table

BUCKET = "test-models"


@pytest.fixture
def registry(aws: None) -> ModelRegistry:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return ModelRegistry(BUCKET, create_table("ModelsTable"), s3=s3, dynamodb=boto3.client("dynamodb"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingCalls:
    """botocore's provide-client-params: once per API call."""

    def __init__(self) -> None:
        self.operations: list[str] = []

    def __call__(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)


def test_a_published_version_is_listed_with_its_digest_and_publishing_it_again_changes_nothing(
    registry: ModelRegistry, tiny_bundle: Path
) -> None:
    first = registry.publish(tiny_bundle, published_by="ana", now=100.0)
    again = registry.publish(tiny_bundle, published_by="bob", now=200.0)
    assert first == again
    assert [(v.version, v.published_by) for v in registry.versions()] == [("tiny-test-1", "ana")]
    assert first.thresholds == Thresholds(0.5, 0.9)
    keys = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="models/tiny-test-1/")["Contents"]
    assert {k["Key"].rsplit("/", 1)[1] for k in keys} >= {
        "model.ubj",
        "features.json",
        "thresholds.json",
        CARD_FILE,
    }


def test_another_model_under_a_published_version_is_refused(
    registry: ModelRegistry, tiny_bundle: Path, tiny_challenger: Path, tmp_path: Path
) -> None:
    registry.publish(tiny_bundle, published_by="ana", now=1.0)
    impostor = shutil.copytree(tiny_challenger, tmp_path / "impostor")
    card = json.loads((impostor / CARD_FILE).read_text())
    (impostor / CARD_FILE).write_text(json.dumps({**card, "version": "tiny-test-1"}))
    with pytest.raises(BundleError, match="already published with another model"):
        registry.publish(impostor, published_by="eve", now=2.0)


def test_a_bundle_the_functions_would_refuse_is_refused_at_publish(
    registry: ModelRegistry, tiny_bundle: Path, tmp_path: Path
) -> None:
    broken = shutil.copytree(tiny_bundle, tmp_path / "broken")
    (broken / "model.ubj").write_bytes(b"not a model")
    with pytest.raises(BundleError, match="corrupt"):
        registry.publish(broken, published_by="ana", now=1.0)
    assert registry.versions() == []


def test_a_version_that_is_no_safe_name_is_refused_naming_it(
    registry: ModelRegistry, tiny_bundle: Path, tmp_path: Path
) -> None:
    sneaky = shutil.copytree(tiny_bundle, tmp_path / "sneaky")
    card = json.loads((sneaky / CARD_FILE).read_text())
    (sneaky / CARD_FILE).write_text(json.dumps({**card, "version": "../../etc/cron.d"}))
    with pytest.raises(BundleError, match=r"model version '\.\./\.\./etc/cron\.d'"):
        registry.publish(sneaky, published_by="eve", now=1.0)
    with pytest.raises(BundleError, match="model version"):
        registry.fetch("../x", tmp_path / "cache")


def test_challenge_promote_and_rollback_keep_a_history_and_rollback_can_return_to_the_layer(
    registry: ModelRegistry, tiny_bundle: Path, tiny_challenger: Path
) -> None:
    for bundle in (tiny_bundle, tiny_challenger):
        registry.publish(bundle, published_by="ana", now=1.0)
    assert registry.lineup() == NO_LINEUP
    challenge(registry, "tiny-test-2", by="ana", note="shadow it", now=10.0)
    promoted = promote(registry, None, by="bob", note="", now=20.0).after
    assert (promoted.champion, promoted.challenger) == ("tiny-test-2", "")
    promote(registry, "tiny-test-1", by="bob", note="", now=30.0)
    back = rollback(registry, by="cy", note="regression", now=40.0).after
    assert (back.champion, back.changed_by, back.action) == ("tiny-test-2", "cy", "rollback")
    history = registry.history()
    assert [(s.seq, s.action, s.champion, s.changed_by) for s in history] == [
        (1, "challenge", "", "ana"),
        (2, "promote", "tiny-test-2", "bob"),
        (3, "promote", "tiny-test-1", "bob"),
        (4, "rollback", "tiny-test-2", "cy"),
    ]
    assert rollback(registry, by="cy", note="", now=50.0).after.champion == ""  # before the first promotion
    with pytest.raises(UsageError, match="nothing to roll back to"):
        rollback(registry, by="cy", note="", now=60.0)


def test_the_first_promotion_rolls_back_to_the_layers_bundle(
    registry: ModelRegistry, tiny_challenger: Path
) -> None:
    registry.publish(tiny_challenger, published_by="ana", now=1.0)
    promote(registry, "tiny-test-2", by="ana", note="", now=2.0)
    assert rollback(registry, by="ana", note="", now=3.0).after.champion == ""
    with pytest.raises(UsageError, match="nothing to roll back to"):
        rollback(registry, by="ana", note="", now=4.0)


def test_a_change_to_the_lineup_in_force_is_no_change_and_leaves_no_history(
    registry: ModelRegistry, tiny_bundle: Path, tiny_challenger: Path
) -> None:
    for bundle in (tiny_bundle, tiny_challenger):
        registry.publish(bundle, published_by="ana", now=1.0)
    assert not challenge(registry, None, by="ana", note="", now=2.0).changed  # no challenger to clear
    assert challenge(registry, "tiny-test-2", by="ana", note="", now=3.0).changed
    again = challenge(registry, "tiny-test-2", by="bob", note="", now=4.0)
    assert not again.changed
    assert again.after == again.before == registry.lineup()
    assert promote(registry, "tiny-test-1", by="ana", note="", now=5.0).changed
    assert not promote(registry, "tiny-test-1", by="bob", note="", now=6.0).changed
    in_force = registry.lineup()
    same = registry.change(
        in_force,
        champion="tiny-test-1",
        challenger="tiny-test-2",
        by="cy",
        now=7.0,
        action="promote",
        note="",
    )
    assert same is in_force
    assert [(s.seq, s.action, s.changed_by) for s in registry.history()] == [
        (1, "challenge", "ana"),
        (2, "promote", "ana"),
    ]


def test_an_unpublished_version_cannot_be_promoted_or_challenge(registry: ModelRegistry) -> None:
    with pytest.raises(UsageError, match="not published"):
        promote(registry, "nope", by="ana", note="", now=1.0)
    with pytest.raises(UsageError, match="not published"):
        challenge(registry, "nope", by="ana", note="", now=1.0)


def test_two_changes_from_the_same_lineup_cannot_both_win(registry: ModelRegistry, tiny_bundle: Path) -> None:
    registry.publish(tiny_bundle, published_by="ana", now=1.0)
    seen = registry.lineup()
    registry.change(seen, champion="tiny-test-1", challenger="", by="ana", now=2.0, action="promote", note="")
    with pytest.raises(ModelRegistryError) as raised:
        registry.change(
            seen, champion="tiny-test-1", challenger="", by="bob", now=3.0, action="promote", note=""
        )
    assert raised.value.operation == "TransactWriteItems"
    assert registry.lineup().changed_by == "ana"


def _source(registry: ModelRegistry, layer: Path, cache: Path, clock: Clock) -> RegistryModels:
    return RegistryModels(
        registry,
        load_member(layer),
        thresholds=lambda bundled: Thresholds(bundled.flag, max(bundled.reject, 0.95)),
        cache_dir=cache,
        max_age=15.0,
        clock=clock,
    )


def test_the_functions_score_with_the_layer_until_a_promotion_and_fetch_a_version_once(
    registry: ModelRegistry, tiny_bundle: Path, tiny_challenger: Path, tmp_path: Path
) -> None:
    clock, calls = Clock(), CountingCalls()
    registry.publish(tiny_challenger, published_by="ana", now=1.0)
    registry._s3.meta.events.register("provide-client-params.*.*", calls)
    registry._dynamodb.meta.events.register("provide-client-params.*.*", calls)
    source = _source(registry, tiny_bundle, tmp_path / "cache", clock)

    lineup = source.current()
    assert (lineup.champion.version, lineup.challenger) == ("tiny-test-1", None)
    assert lineup.reference is not None  # the layer's card carries its drift reference
    challenge(registry, "tiny-test-2", by="ana", note="", now=2.0)
    clock.now = 10.0
    assert source.current().challenger is None  # within max_age: the cached lineup
    clock.now = 15.0
    lineup = source.current()
    assert lineup.challenger is not None
    assert lineup.challenger.version == "tiny-test-2"
    assert lineup.challenger_thresholds == Thresholds(0.4, 0.95)  # its own, with the deploy-time override
    calls.operations.clear()
    promote(registry, None, by="ana", note="", now=3.0)
    calls.operations.clear()
    clock.now = 30.0
    lineup = source.current()
    assert (lineup.champion.version, lineup.challenger) == ("tiny-test-2", None)
    assert calls.operations == ["GetItem"]  # already fetched as challenger: no GetObject
    assert (tmp_path / "cache" / "tiny-test-2").is_dir()


def test_after_a_restore_the_lineup_is_read_again_at_once_and_loaded_versions_are_kept(
    registry: ModelRegistry, tiny_bundle: Path, tiny_challenger: Path, tmp_path: Path
) -> None:
    clock, calls = Clock(), CountingCalls()
    registry.publish(tiny_challenger, published_by="ana", now=1.0)
    challenge(registry, "tiny-test-2", by="ana", note="", now=2.0)
    snapshot = _source(registry, tiny_bundle, tmp_path / "cache", clock)
    loaded = snapshot.current().challenger
    promote(registry, "tiny-test-2", by="ana", note="", now=3.0)  # while the snapshot sleeps
    fresh = ModelRegistry(BUCKET, registry.table, s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"))
    fresh._s3.meta.events.register("provide-client-params.*.*", calls)
    fresh._dynamodb.meta.events.register("provide-client-params.*.*", calls)
    restored = snapshot.rewired(fresh)
    lineup = restored.current()  # within the snapshot's max_age, all the same
    assert lineup.champion is loaded
    assert calls.operations == ["GetItem"]  # the lineup, through the new client; nothing fetched


def test_a_failed_read_keeps_the_lineup_in_force_and_is_retried_soon(
    registry: ModelRegistry, tiny_bundle: Path, tmp_path: Path
) -> None:
    clock = Clock()
    source = _source(registry, tiny_bundle, tmp_path / "cache", clock)
    source.current()
    boto3.client("dynamodb").delete_table(TableName=registry.table)
    clock.now = 20.0
    assert source.current().champion.version == "tiny-test-1"
    assert source.read_errors == 1


def test_a_version_built_for_other_features_is_refused_and_the_lineup_kept(
    registry: ModelRegistry, tiny_bundle: Path, tiny_challenger: Path, tmp_path: Path
) -> None:
    clock = Clock()
    registry.publish(tiny_challenger, published_by="ana", now=1.0)
    features = {"feature_names": ["amount", "something_else"]}
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key="models/tiny-test-2/features.json", Body=json.dumps(features).encode()
    )
    source = _source(registry, tiny_bundle, tmp_path / "cache", clock)
    promote(registry, "tiny-test-2", by="ana", note="", now=2.0)
    assert source.current().champion.version == "tiny-test-1"
    assert read_bundle(tiny_bundle).version == "tiny-test-1"


def test_a_version_whose_thresholds_the_override_breaks_is_refused_and_the_lineup_kept(
    registry: ModelRegistry, tiny_bundle: Path, tiny_challenger: Path, tmp_path: Path
) -> None:
    class Override:
        """FLAG_THRESHOLD/REJECT_THRESHOLD that fit the layer's bundle, not the challenger's."""

        def __call__(self, bundled: Thresholds) -> Thresholds:
            if bundled == Thresholds(0.4, 0.8):
                raise ConfigurationError("FLAG_THRESHOLD/REJECT_THRESHOLD: thresholds must satisfy ...")
            return bundled

    override = Override()
    registry.publish(tiny_challenger, published_by="ana", now=1.0)
    source = RegistryModels(
        registry, load_member(tiny_bundle), thresholds=override, cache_dir=tmp_path, max_age=0, clock=Clock()
    )
    assert source.current().champion.version == "tiny-test-1"
    promote(registry, "tiny-test-2", by="ana", note="", now=2.0)
    assert source.current().champion.version == "tiny-test-1"


def test_drift_counts_from_several_writers_add_up_per_window_and_a_rewrite_counts_once(aws: None) -> None:
    store = DriftStore(create_table("DriftTable"), boto3.client("dynamodb"))
    counts = np.arange(len(COLUMNS) * SLOTS, dtype=np.int64).reshape(len(COLUMNS), SLOTS)
    store.add("v1", 900, "container-a#1", counts, expires_at=10**9)
    store.add("v1", 900, "container-a#1", counts, expires_at=10**9)  # a retried write: the same item
    store.add("v1", 900, "container-b#1", counts, expires_at=10**9)
    store.add("v1", 1800, "container-a#2", counts, expires_at=10**9)
    store.add("v2", 900, "container-a#1", counts, expires_at=10**9)
    found = store.windows("v1", 900, 1800)
    assert list(found) == [900]
    np.testing.assert_array_equal(found[900], counts * 2)
    assert list(store.windows("v1", 0, 2700)) == [900, 1800]


def test_a_version_is_fetched_with_its_compiled_model_and_scores_with_it(
    registry: ModelRegistry, tiny_challenger: Path, tmp_path: Path
) -> None:
    fetched, scorer = _published_and_fetched(registry, tiny_challenger, tmp_path / "cache")
    for name in COMPILED_FILES:
        assert (fetched / name).read_bytes() == (tiny_challenger / name).read_bytes()
    assert scorer == "compiled"


def test_a_version_published_without_a_compiled_model_is_fetched_and_scores_with_xgboost(
    registry: ModelRegistry, tiny_challenger: Path, tmp_path: Path
) -> None:
    plain = shutil.copytree(tiny_challenger, tmp_path / "plain")
    for name in COMPILED_FILES:
        (plain / name).unlink()
    fetched, scorer = _published_and_fetched(registry, plain, tmp_path / "cache")
    assert not any((fetched / name).exists() for name in COMPILED_FILES)
    assert scorer == "xgboost"


def _published_and_fetched(registry: ModelRegistry, bundle: Path, cache: Path) -> tuple[Path, str]:
    """Publish `bundle` (version tiny-test-2), fetch it into `cache`: where it landed, and what scores it."""
    registry.publish(bundle, published_by="ana", now=1.0)
    fetched = registry.fetch("tiny-test-2", cache)
    model = load_member(fetched).model
    assert isinstance(model, XGBoostModel)
    return fetched, model.scorer


def test_a_library_compiled_again_does_not_make_another_version(
    registry: ModelRegistry, tiny_challenger: Path, tmp_path: Path
) -> None:
    first = registry.publish(tiny_challenger, published_by="ana", now=1.0)
    rebuilt = shutil.copytree(tiny_challenger, tmp_path / "rebuilt")
    (rebuilt / COMPILED_LIBRARY).write_bytes((rebuilt / COMPILED_LIBRARY).read_bytes() + b"\0")
    assert registry.publish(rebuilt, published_by="bob", now=2.0) == first  # the version names the model
