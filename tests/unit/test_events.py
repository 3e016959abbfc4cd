"""The sample events are the generator's: regenerating them changes nothing."""

import json
from pathlib import Path

from infra.events import EVENTS_DIR, write_sample_events


def test_committed_sample_events_are_what_the_generator_makes(tmp_path: Path):
    written = write_sample_events(tmp_path)
    assert [p.name for p in written] == ["ordinary.json", "fraud.json", "malformed.json", "mixed.json"]
    for path in written:
        committed = json.loads((EVENTS_DIR / path.name).read_text())
        assert json.loads(path.read_text()) == committed, (
            f"events/{path.name} is stale: run `fraudwatch events`"
        )
