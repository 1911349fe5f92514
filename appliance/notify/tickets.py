"""Tickets: one issue per case in GitHub (github.com or Enterprise Server, by base URL)
or Jira Data Center, its URL stored with the case and audited; a comment when the case
is verified (sent through the outbox, so it is retried like any message).

GitHub: ``POST {url}/repos/{owner}/{repo}/issues`` with ``Authorization: Bearer`` and
``Accept: application/vnd.github+json``, body ``{title, body, labels}``; comments on
``.../issues/{number}/comments``. Jira Data Center: ``POST {url}/rest/api/2/issue`` with
basic auth (``username`` set) or a bearer personal access token, body ``{"fields":
{project: {key}, summary, description, issuetype: {name}}}``; comments on
``.../rest/api/2/issue/{key}/comment``.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from appliance.audit.log import AuditLog
from appliance.cases.model import UNDETERMINED, Case
from appliance.cases.store import CaseStore
from appliance.errors import ConfigError, DeliveryError
from appliance.notify import config, http
from appliance.notify.message import case_link
from appliance.settings import Settings, Tracker
from appliance.store.database import Database, rows
from appliance.times import iso

MAX_TRACES = 10


def _now() -> datetime:
    return datetime.now(UTC)


def description(case: Case, console_url: str) -> str:
    """The issue body: what was detected, the evidence, the diagnosis, links."""
    out = [f"Tracehold detected **{case.failure_type}** in service **{case.service}** "
           f"(case `{case.id}`), onset {case.onset_at}, status {case.status}.", ""]
    if case.signals:
        out += ["Evidence:", *(f"- {s.name}: {s.value} (baseline {s.baseline}, "
                                f"{s.window or '-'})" for s in case.signals), ""]
    if case.trace_ids:
        more = case.trace_ids_total - min(len(case.trace_ids), MAX_TRACES)
        out += [f"Traces ({case.trace_ids_total}): "
                + ", ".join(f"`{t}`" for t in case.trace_ids[:MAX_TRACES])
                + (f" and {more} more" if more > 0 else ""), ""]
    if case.confidence is not None:
        cause = case.root_cause if case.confidence >= 0.5 else UNDETERMINED
        out += [f"Diagnosis ({case.confidence:.0%} confidence): {cause}", ""]
        out += [f"- hypothesis {h.rank}: {h.cause} ({h.confidence:.0%})"
                for h in case.hypotheses]
    link = case_link(console_url, case.id)
    if link:
        out += ["", f"Case in the Tracehold console: {link}"]
    return "\n".join(out).strip() + "\n"


def _headers(name: str, t: Tracker, token: str) -> dict[str, str]:
    if name == "github":
        return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"}
    if t.username:
        basic = base64.b64encode(f"{t.username}:{token}".encode()).decode()
        return {"Authorization": f"Basic {basic}", "Accept": "application/json"}
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


def _hint(name: str) -> str:
    return f"check the {name} token (`tracehold notify secret {name}`)"


def open_issue(name: str, t: Tracker, token: str, case: Case, console_url: str,
               timeout: float) -> tuple[str, str]:
    """Create the issue; returns (its web URL, its reference: number or key)."""
    base = t.url.rstrip("/")
    title = f"[Tracehold] {case.title}"
    if name == "github":
        r = http.post(f"{base}/repos/{t.project}/issues", what="GitHub", timeout=timeout,
                      ca_file=t.ca_file, headers=_headers(name, t, token), auth_hint=_hint(name),
                      json={"title": title, "body": description(case, console_url),
                            "labels": t.labels})
        body = _json(r, "GitHub")
        return str(body["html_url"]), str(body["number"])
    r = http.post(f"{base}/rest/api/2/issue", what="Jira", timeout=timeout, ca_file=t.ca_file,
                  headers=_headers(name, t, token), auth_hint=_hint(name),
                  json={"fields": {"project": {"key": t.project}, "summary": title[:250],
                                   "description": description(case, console_url),
                                   "issuetype": {"name": t.issue_type}}})
    key = str(_json(r, "Jira")["key"])
    return f"{base}/browse/{key}", key


def comment(name: str, t: Tracker, token: str, ref: str, text: str, timeout: float) -> None:
    base = t.url.rstrip("/")
    if name == "github":
        http.post(f"{base}/repos/{t.project}/issues/{ref}/comments", what="GitHub",
                  timeout=timeout, ca_file=t.ca_file, headers=_headers(name, t, token),
                  auth_hint=_hint(name), json={"body": text})
    else:
        http.post(f"{base}/rest/api/2/issue/{ref}/comment", what="Jira", timeout=timeout,
                  ca_file=t.ca_file, headers=_headers(name, t, token), auth_hint=_hint(name),
                  json={"body": text})


def _json(r: Any, what: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = r.json()
        return body
    except ValueError as exc:
        raise DeliveryError(f"{what} answered {r.status_code} without JSON") from exc


class Tickets:
    """The case_tickets table (made by the outbox's migrations) and the trackers."""

    def __init__(self, db: Database, audit: AuditLog, cases: CaseStore, settings: Settings,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.db, self.audit, self.cases, self.settings = db, audit, cases, settings
        self.clock = clock or _now
        self._lock = threading.Lock()  # one ticket per case, even for two quick clicks

    def get(self, case_id: str) -> dict[str, Any] | None:
        found = self.db.read("SELECT * FROM case_tickets WHERE case_id = ?", [case_id])
        if not found:
            return None
        return {k: (iso(v) if isinstance(v, datetime) else v) for k, v in found[0].items()}

    def create(self, case_id: str, name: str, actor: str) -> dict[str, Any]:
        """The case's ticket: the one it has, else a new one in ``name`` (github, jira).
        A refusal (a 401 included) is stored on the case, audited and raised."""
        with self._lock:
            existing = self.get(case_id)
            if existing and existing["state"] == "created":
                return {**existing, "existing": True}
            case = self.cases.get(case_id)
            t = config.tracker(self.settings, name)
            token = config.secrets_of(self.settings).get(name)
            if not token:
                raise ConfigError(f"no {name} token in the secrets file "
                                  f"(`tracehold notify secret {name}`)")
            try:
                url, ref = open_issue(name, t, token, case, self.settings.notify.console_url,
                                      self.settings.notify.timeout_s)
            except DeliveryError as exc:
                self._store(case_id, name, "failed", None, None, exc.message, actor)
                raise
            self._store(case_id, name, "created", url, ref, None, actor)
        ticket = self.get(case_id)
        assert ticket is not None
        return {**ticket, "existing": False}

    def _store(self, case_id: str, name: str, state: str, url: str | None, ref: str | None,
               error: str | None, actor: str) -> None:
        now = self.clock()
        with self.db.transaction() as con:
            found = rows(con, "SELECT created_at FROM case_tickets WHERE case_id = ?", [case_id])
            con.execute("INSERT OR REPLACE INTO case_tickets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [case_id, name, state, url, ref, error,
                         found[0]["created_at"] if found else now, now])
            if state == "created":
                self.audit.append_in(con, actor, "case.ticket", case_id,
                                     {"tracker": name, "url": url, "ref": ref})
            else:
                self.audit.append_in(con, actor, "case.ticket.failed", case_id,
                                     {"tracker": name, "error": error})

    def comment(self, case_id: str, text: str) -> bool:
        """Comment on the case's ticket; False when it has none (nothing to do)."""
        ticket = self.get(case_id)
        if not ticket or ticket["state"] != "created":
            return False
        name = ticket["tracker"]
        token = config.secrets_of(self.settings).get(name)
        if not token:
            raise ConfigError(f"no {name} token in the secrets file")
        comment(name, config.tracker(self.settings, name), token, ticket["ref"], text,
                self.settings.notify.timeout_s)
        return True
