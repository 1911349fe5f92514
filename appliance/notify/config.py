"""Destinations and trackers as configured, their secrets, and the checks `tracehold
validate` runs on them (without contacting anything).

Secrets (a webhook's signing key, a chat hook's URL with its token, the SMTP password,
tracker tokens) live in the 0600 secrets file under ``notify``, keyed by the
destination's name or ``github``/``jira``; they never enter settings, logs, the outbox
or an export.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from appliance.errors import ConfigError, NotFound
from appliance.secrets import SecretsFile
from appliance.settings import Destination, Settings, Tracker

_KEY = "notify"
TRACKERS = ("github", "jira")


def secrets_of(s: Settings) -> dict[str, str]:
    raw = SecretsFile(s.secrets_file).load().extra.get(_KEY, {})
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def set_secret(s: Settings, name: str, value: str) -> None:
    """Store ``value`` as the secret of destination or tracker ``name``."""
    known = {d.name for d in s.notify.destinations} | set(TRACKERS)
    if name not in known:
        raise NotFound(f"no destination or tracker named {name!r} (known: "
                       f"{', '.join(sorted(known))})")
    file = SecretsFile(s.secrets_file)
    data = file.load()
    current = data.extra.get(_KEY)
    entries = dict(current) if isinstance(current, dict) else {}
    entries[name] = value
    data.extra[_KEY] = entries
    file.save(data)


def destination(s: Settings, name: str) -> Destination:
    for d in s.notify.destinations:
        if d.name == name:
            return d
    raise NotFound(f"no destination named {name!r} (configured: "
                   f"{', '.join(d.name for d in s.notify.destinations) or 'none'})")


def tracker(s: Settings, name: str) -> Tracker:
    if name not in TRACKERS:
        raise ConfigError(f"a ticket goes to github or jira, not {name!r}")
    found: Tracker | None = getattr(s.notify, name)
    if found is None:
        raise ConfigError(f"no {name} tracker is configured (settings notify.{name})")
    return found


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    message: str


def _url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        return f"URL must start with {' or '.join(f'{x}://' for x in schemes)}"
    if not parts.hostname:
        return "URL has no host"
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        return f"URL has a bad port: {exc}"
    return None


def _destination_problems(d: Destination, secrets: dict[str, str]) -> list[str]:
    if d.kind == "email":
        problems = [p for p in [_url_problem(d.url, ("smtp", "smtps"))] if p]
        if not d.mail_from:
            problems.append("mail_from is not set")
        if not d.mail_to:
            problems.append("mail_to names no recipient")
        if d.username and d.name not in secrets:
            problems.append(f"no SMTP password in the secrets file "
                            f"(`tracehold notify secret {d.name}`)")
    else:
        url = secrets.get(d.name, d.url) if d.kind == "chat" else d.url
        problems = [p for p in [_url_problem(url, ("http", "https"))] if p]
        if d.kind == "webhook" and d.name not in secrets:
            problems.append(f"no signing key in the secrets file "
                            f"(`tracehold notify secret {d.name}`)")
    if d.ca_file is not None and not d.ca_file.is_file():
        problems.append(f"ca_file {d.ca_file} does not exist")
    return problems


def check(s: Settings) -> list[Finding]:
    """One finding per destination and tracker: what is wrong with its settings."""
    secrets = secrets_of(s)
    out: list[Finding] = []
    names = [d.name for d in s.notify.destinations]
    for d in s.notify.destinations:
        problems = _destination_problems(d, secrets)
        if names.count(d.name) > 1:
            problems.append("another destination has the same name")
        out.append(Finding(f"notify:{d.name}", not problems,
                           "; ".join(problems) or f"{d.kind} {d.url} ({', '.join(d.events)})"))
    for name in TRACKERS:
        t: Tracker | None = getattr(s.notify, name)
        if t is None:
            continue
        problems = [p for p in [_url_problem(t.url, ("http", "https"))] if p]
        if name == "github" and t.project.count("/") != 1:
            problems.append("project must be owner/repo")
        if name not in secrets:
            problems.append(f"no token in the secrets file (`tracehold notify secret {name}`)")
        out.append(Finding(f"tracker:{name}", not problems,
                           "; ".join(problems) or f"{t.url} {t.project}"))
    return out


def endpoints(s: Settings) -> list[tuple[str, int]]:
    """Every (host, port) notifications and tickets may contact: the configured ones and
    nothing else (for a zero-egress check's allow-list). A chat hook whose URL is kept as
    its secret is listed from the secret."""
    secrets = secrets_of(s)
    urls = [secrets.get(d.name, d.url) if d.kind == "chat" else d.url
            for d in s.notify.destinations]
    urls += [t.url for t in (s.notify.github, s.notify.jira) if t is not None]
    out = []
    for url in urls:
        parts = urlsplit(url)
        default = {"https": 443, "http": 80, "smtps": 465, "smtp": 25}.get(parts.scheme, 0)
        try:
            port = parts.port or default
        except ValueError:
            continue  # `validate` reports it
        if parts.hostname:
            out.append((parts.hostname, port))
    return sorted(set(out))
