"""Offline scoring: a transaction file's features replayed in time order, scored and decided by the
Lambda's own model adapter (`fraudwatch score-file`, and the backtest's test period).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from tqdm import tqdm

from fraudwatch.domain.label import DEFAULT_LABEL_DELAY
from training.features import compute_features
from training.generate import write_history
from training.io import LABEL, PATTERN, DataFileError

SCORE_CHUNK = 50_000


def score_frame(
    frame: pd.DataFrame,
    model: Any,
    *,
    source: str,
    label_delay: float = DEFAULT_LABEL_DELAY,
    progress: bool = False,
) -> pd.DataFrame:
    """Each transaction's score and decision, in time order (the order it was scored in).

    A file with `is_fraud` feeds its labels back `label_delay` seconds after each transaction.
    """
    matrix = compute_features(frame, source=source, check=False, label_delay=label_delay, progress=progress)
    scores = score_rows(model, matrix.values[matrix.order], progress)
    out = pd.DataFrame(
        {
            "transaction_id": frame["transaction_id"].to_numpy()[matrix.order],
            "timestamp": frame["timestamp"].to_numpy()[matrix.order],
            "score": scores,
            "decision": [model.thresholds.decide(score).value for score in scores.tolist()],
        }
    )
    for column in (LABEL, PATTERN):
        if column in frame.columns:
            out[column] = frame[column].to_numpy()[matrix.order]
    return out


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write CSV or Parquet by suffix, atomically (the generator's writer); errors name the file."""
    try:
        write_history(frame, path)
    except (ValueError, OSError) as exc:
        raise DataFileError(f"{path}: cannot write: {exc}") from exc


def score_rows(model: Any, values: np.ndarray, progress: bool = False) -> np.ndarray:
    """The model adapter's scores of feature rows, a chunk per call as the Lambda scores a batch."""
    scores: list[float] = []
    with tqdm(total=len(values), desc="scoring", unit="tx", unit_scale=True, disable=not progress) as bar:
        for start in range(0, len(values), SCORE_CHUNK):
            chunk = values[start : start + SCORE_CHUNK]
            scores.extend(model.score(cast("Sequence[Sequence[float]]", chunk)))
            bar.update(len(chunk))
    return np.asarray(scores, dtype=np.float64)
