"""Content versions: the same table gives the same version, any change gives another."""

from __future__ import annotations

import hashlib
import json

import pandas as pd

VERSION_LENGTH = 16


def content_version(frame: pd.DataFrame) -> str:
    """A short hex digest of the frame's column names, dtypes and values (row order included)."""
    digest = hashlib.sha256()
    schema = [[str(name), str(dtype)] for name, dtype in frame.dtypes.items()]
    digest.update(json.dumps(schema).encode())
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest.update(row_hashes.astype("<u8").tobytes())
    return digest.hexdigest()[:VERSION_LENGTH]
