"""The audit log: every write (brands, references, keys, decisions, calibrations, webhooks,
re-scores, pruning) with who and when. Rows are written by ``detector.store.write_audit`` in the
write's own transaction, so a write and its record commit together."""

from __future__ import annotations

import json
from typing import Any

from detector.checks import normalise_time
from detector.store import MAX_ID, Store


def entries(store: Store, *, action: str | None = None, target: str | None = None, key_id: str | None = None,
            since: str | None = None, until: str | None = None, limit: int = 100,
            before: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Newest first; ``action`` matches exactly or as a prefix ending in '.' (``decision.``). -> (page, next cursor)."""
    clauses, params = ["id < ?"], [before if before is not None else MAX_ID]
    if action is not None and action.endswith("."):
        clauses.append("substr(action, 1, ?) = ?")
        params += [len(action), action]
    elif action is not None:
        clauses.append("action = ?")
        params.append(action)
    for column, value in (("target", target), ("key_id", key_id)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            clauses.append(f"at {op} ?")
            params.append(normalise_time(bound))
    rows = store.query(f"SELECT id, at, key_id, action, target, detail FROM audit WHERE {' AND '.join(clauses)} "
                       "ORDER BY id DESC LIMIT ?", (*params, limit + 1))
    page = [{"id": r[0], "at": r[1], "key_id": r[2], "action": r[3], "target": r[4], "detail": json.loads(r[5])}
            for r in rows[:limit]]
    return page, (page[-1]["id"] if len(rows) > limit else None)
