"""`tracehold kb status` and `tracehold kb rebuild` on a real knowledge base folder: a
corrupt one is a clear error naming the command, the rebuild keeps it aside and seeds a
fresh one, and a rebuild under a running daemon is refused."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from appliance.cli.main import build
from appliance.errors import Conflict, KnowledgeBaseUnavailable
from appliance.rca.kb import load_playbooks
from tests.notify_servers import free_port


def _run(data_dir: Path, port: int, *argv: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(build("kb"), ["kb", *argv, "--data-dir", str(data_dir)],
                                env={"TRACEHOLD_PORTS__DAEMON": str(port)})
    return result.exit_code, result.output, result.exception


def test_a_corrupt_folder_is_named_and_rebuilt(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: no daemon
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "chroma.sqlite3").write_bytes(os.urandom(8192))

    code, _, exc = _run(tmp_path, port, "status")
    assert code != 0 and isinstance(exc, KnowledgeBaseUnavailable)
    assert "tracehold kb rebuild" in exc.message and str(kb) in exc.message

    code, out, exc = _run(tmp_path, port, "rebuild", "--json")
    assert code == 0, exc
    done = json.loads(out)
    assert done["playbooks"] == len(load_playbooks())
    aside = Path(done["moved_aside"])
    assert aside.name.startswith("kb.corrupt-") and (aside / "chroma.sqlite3").is_file()

    code, out, exc = _run(tmp_path, port, "status", "--json")
    assert code == 0, exc
    assert json.loads(out) == {"path": str(kb), "playbooks": len(load_playbooks()), "cases": 0}


class _Healthz(BaseHTTPRequestHandler):
    """Answers /healthz as a running daemon does (the rebuild only asks that)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def daemon_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_rebuild_refuses_while_the_daemon_runs(tmp_path: Path, daemon_port: int) -> None:
    (tmp_path / "kb").mkdir()
    code, _, exc = _run(tmp_path, daemon_port, "rebuild")
    assert code != 0 and isinstance(exc, Conflict) and "tracehold down" in exc.message
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("kb")] == ["kb"]
