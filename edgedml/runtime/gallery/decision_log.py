"""One row of a gallery's decision log: :class:`LoggedDecision`, what
:meth:`~.gallery.Gallery.decisions` returns (newest first), whichever store keeps the log."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoggedDecision:
    """A decision as :meth:`~.gallery.Gallery.log_decision` recorded it."""

    id: int
    time: float  # seconds since the epoch
    door: str | None  # the door that decided
    kind: str  # "verify" or "identify"
    claimed: str | None  # the identity claimed (verify)
    decided: str | None  # the identity verified or identified (None: nothing to score)
    score: float | None
    threshold: float | None
    accepted: bool
    evidence: str | None  # the path of the evidence picture
    details: dict = field(default_factory=dict, hash=False, compare=False)  # the face box, the reason, the caller's

    @classmethod
    def from_row(cls, row: dict) -> LoggedDecision:
        """A store's row (its ``details`` JSON text or a dict) → the typed record."""
        details = row.get("details")
        if isinstance(details, str):
            try:
                details = json.loads(details)
            except ValueError:
                details = {"text": details}
        return cls(id=int(row["id"]), time=float(row["time"]), door=row.get("door"), kind=row["kind"],
                   claimed=row.get("claimed"), decided=row.get("decided"),
                   score=None if row.get("score") is None else float(row["score"]),
                   threshold=None if row.get("threshold") is None else float(row["threshold"]),
                   accepted=bool(row.get("accepted")), evidence=row.get("evidence"),
                   details=details if isinstance(details, dict) else {})

    @property
    def reason(self) -> str | None:
        """Why it was decided without a score ("no face found"), if so."""
        return self.details.get("reason")

    def to_dict(self) -> dict:
        return {"id": self.id, "time": self.time, "door": self.door, "kind": self.kind, "claimed": self.claimed,
                "decided": self.decided, "score": self.score, "threshold": self.threshold,
                "accepted": self.accepted, "evidence": self.evidence, "details": dict(self.details)}
