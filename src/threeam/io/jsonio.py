"""Reading a JSON file the user or a run gave: one rule, one-line errors."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from threeam.errors import InputError, ThreeAMError

__all__ = ["read_json"]


def read_json(path: str | os.PathLike, what: str, *, error: type[ThreeAMError] = InputError,
              missing: Optional[str] = None) -> Any:
    """The parsed content of the JSON file `path` (UTF-8).

    Args:
        what: what the file is, for the messages (``"tracks file"``).
        error: the exception class raised (`InputError`; `CheckpointError` for checkpoints).
        missing: the message when there is no such file (default ``"<what> not found: <path>"``).
    Raises:
        `error` with one line: the file is missing, cannot be read or decoded, or is not JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise error(missing or f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not a text (JSON) file") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise error(f"{what} {path} is not valid JSON: {e}") from None
