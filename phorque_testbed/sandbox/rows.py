"""The type of a job or node row as the sandbox's functions read it.

A database row (``sqlite3.Row``, which the type checker does not take for a Mapping) or a plain
dict of the same columns; the functions only index it by column name. Kept apart so that the
modules that read rows need not import the store that makes them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

Record = sqlite3.Row | Mapping[str, Any]
