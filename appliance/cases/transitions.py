"""Which status a case may move to, and by which action.

    open ──────────► investigating ◄──► mitigated
      │                    │                │
      └────────────────────┴──── resolve ───┴──► resolved ── verify (passed) ──► verified
                                                   │
                       investigating ◄─ reopen / verify (failed)

``resolved`` is reached only through ``resolve`` (it records the resolution) and
``verified`` only through ``verify`` (it records the check result).
"""

from __future__ import annotations

from appliance.errors import Conflict

# (from, to) -> the action that performs it
TRANSITIONS: dict[tuple[str, str], str] = {
    ("open", "investigating"): "status",
    ("open", "mitigated"): "status",
    ("investigating", "mitigated"): "status",
    ("mitigated", "investigating"): "status",
    ("open", "resolved"): "resolve",
    ("investigating", "resolved"): "resolve",
    ("mitigated", "resolved"): "resolve",
    ("resolved", "investigating"): "status",
    ("resolved", "verified"): "verify",
}
ACTIVE = ("open", "investigating", "mitigated")  # a new detection joins these


def check(current: str, target: str, action: str) -> None:
    """Raise Conflict (409) unless ``action`` may move a case from current to target."""
    how = TRANSITIONS.get((current, target))
    if how == action:
        return
    if current == target:
        raise Conflict(f"the case is already {current}")
    if how is not None:
        raise Conflict(f"{current} -> {target} is done with `{how}`, not `{action}`")
    allowed = sorted(t for (f, t) in TRANSITIONS if f == current)
    raise Conflict(f"a case that is {current} cannot become {target}; it can become: "
                   f"{', '.join(allowed) or 'nothing (final)'}")
