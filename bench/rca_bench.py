"""Root-cause analysis over the scenario suite (tests/rca_incidents.py): at least ten
generated incidents per failure type with their confounders, ambiguous cases and normal
traffic, each replayed into a real DuckDB store and opened by the real detectors, then
diagnosed by each variant:

* ``rules``: the rules alone (``appliance.rca.run.rules_rca``);
* ``kb``: the pipeline with the knowledge base and no model
  (``appliance.rca.pipeline.diagnose_case(..., kb, None)``);
* ``model:<name>``: the pipeline with the local model and no knowledge base;
* ``full:<name>``: the pipeline with both;

for each GGUF named with ``--models`` (default: the two of models/manifest.toml). A
variant whose module or model cannot be loaded is reported as not available, with why;
no number is made up for it.

    nice .venv/bin/python bench/rca_bench.py [--variants rules,kb,model,full]
        [--models smollm2-135m-instruct,gemma-3-270m] [--per-type 10] [--only ID ...]
        [--rebuild]

Writes bench/results/rca.json (variants run now replace their earlier entry; others are
kept with their own measured_at): per variant the metrics of tests/rca_scoring.py and
each case's outcome. Replays are cached (tests/rca_incidents.py says where).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.cases.model import Rca  # noqa: E402
from appliance.rca.run import rules_rca  # noqa: E402
from appliance.settings import Settings  # noqa: E402
from tests import rca_incidents as incidents  # noqa: E402
from tests.rca_scoring import Outcome, metrics, outcome  # noqa: E402

OUT = ROOT / "bench" / "results" / "rca.json"
MODELS = ("smollm2-135m-instruct", "gemma-3-270m")
DEFAULT_MODEL = MODELS[0]
GOALS = {"type_accuracy": (">=", 0.9), "root_cause_at_1": (">=", 0.8),
         "root_cause_at_3": (">=", 0.95), "harmless_change_blamed": ("<=", 0.1),
         "abstention_precision": (">=", 0.8), "seconds_p95": ("<=", 30.0)}
Diagnose = Callable[[Any, str, datetime], Rca]


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"[:500]


def _pipeline() -> Any:
    from appliance.rca import pipeline

    return pipeline.diagnose_case


def _kb(folder: Path) -> Any:
    from appliance.rca.embed import Embedder
    from appliance.rca.kb import KnowledgeBase

    return KnowledgeBase.open(folder, Embedder(), seed=True)


def _model(name: str) -> Any:
    from appliance.rca.model import LocalModel

    return LocalModel.load(Settings(rca_model_name=name))


def variants(wanted: list[str], models: list[str], kb_folder: Path
             ) -> tuple[dict[str, Diagnose], dict[str, str], dict[str, Any]]:
    """The diagnose functions that can run, why the others cannot, and what each runs
    with (model name and sha256)."""
    ready: dict[str, Diagnose] = {}
    absent: dict[str, str] = {}
    about: dict[str, Any] = {}
    if "rules" in wanted:
        ready["rules"] = lambda r, c, now: rules_rca(r, c, now=now)
        about["rules"] = {"engine": "rules"}
    names = ["kb"] * ("kb" in wanted) + [f"{v}:{m}" for v in ("model", "full") if v in wanted
                                         for m in models]
    if not names:
        return ready, absent, about
    try:
        diagnose_case = _pipeline()
    except Exception as exc:
        return ready, {n: f"appliance.rca.pipeline: {_why(exc)}" for n in names}, about
    kb: Any = None
    if any(n == "kb" or n.startswith("full:") for n in names):
        try:
            kb = _kb(kb_folder)
            about["kb"] = {"entries": kb.count()}
        except Exception as exc:
            kb = exc
    loaded: dict[str, Any] = {}
    for m in models:
        if any(n.endswith(f":{m}") for n in names):
            try:
                loaded[m] = _model(m)
            except Exception as exc:
                loaded[m] = exc
    for n in names:
        kind, _, m = n.partition(":")
        parts = {"kb": kb if kind in ("kb", "full") else None,
                 "model": loaded.get(m) if kind in ("model", "full") else None}
        broken = [f"{k}: {_why(v)}" for k, v in parts.items() if isinstance(v, BaseException)]
        if broken:
            absent[n] = "; ".join(broken)
            continue
        ready[n] = _bind(diagnose_case, parts["kb"], parts["model"])
        info = getattr(parts["model"], "info", None)
        about[n] = {"engine": "pipeline", "kb": parts["kb"] is not None,
                    "model": getattr(info, "name", None), "sha256": getattr(info, "sha256", None),
                    "gguf": str(getattr(info, "path", "")) or None}
    return ready, absent, about


def _bind(diagnose_case: Any, kb: Any, model: Any) -> Diagnose:
    return lambda r, c, now: diagnose_case(r, c, kb, model, now)


def run(specs: list[incidents.Spec], ready: dict[str, Diagnose], rebuild: bool,
        save: Callable[[Progress, bool], None]) -> Progress:
    got = Progress({n: [] for n in ready})
    # Incidents already in the cache first: the rest are replayed as the run goes.
    specs = sorted(specs, key=lambda s: not incidents.is_built(s) or rebuild)
    for n, spec in enumerate(specs, 1):
        t = time.monotonic()
        incidents.built(spec, rebuild)
        with incidents.opened(spec) as o:
            got.sources.add(o.meta["sources"])
            got.missed += [{**m, "incident": spec.id} for m in o.missed]
            if spec.group == "normal":
                got.normal_s += (datetime.fromisoformat(o.meta["end"]) - datetime.fromisoformat(
                    o.meta["detected_since"])).total_seconds()
            for case in o.cases:
                for name, diagnose in ready.items():
                    t0 = time.perf_counter()
                    try:
                        rca = diagnose(o.records, case.case_id, case.now)
                    except Exception:  # a crash is a result too: counted, never hidden
                        traceback.print_exc()
                        rca = Rca(root_cause="(crashed)", confidence=0.0, hypotheses=[],
                                  details={"status": "crashed", "determined": False})
                    got.outcomes[name].append(outcome(case, rca, time.perf_counter() - t0))
        got.done.append(spec.id)
        print(f"{n}/{len(specs)} {spec.id}: {len(o.cases)} cases, {len(o.missed)} missed, "
              f"{time.monotonic() - t:.1f} s", file=sys.stderr, flush=True)
        save(got, n == len(specs))
    return got


@dataclass
class Progress:
    outcomes: dict[str, list[Outcome]]
    missed: list[dict[str, Any]] = field(default_factory=list)
    normal_s: float = 0.0
    sources: set[str] = field(default_factory=set)
    done: list[str] = field(default_factory=list)


def _goals(m: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, (op, bound) in GOALS.items():
        v = m.get(key)
        out[key] = {"goal": f"{op} {bound}", "value": v,
                    "met": None if v is None else (v >= bound if op == ">=" else v <= bound)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="rules,kb,model,full")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--per-type", type=int, default=10)
    p.add_argument("--seed", type=int, default=1,
                   help="another seed draws other incidents of the same design (held out)")
    p.add_argument("--only", nargs="*", default=None, help="incident ids")
    p.add_argument("--rebuild", action="store_true", help="replay every incident afresh")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args()
    specs = incidents.suite(a.per_type, a.seed)
    if a.only:
        specs = [s for s in specs if s.id in a.only]
    previous = json.loads(a.out.read_text()) if a.out.exists() else {}
    kept = previous.get("variants", {}) if not a.only else {}
    started = datetime.now(UTC).isoformat(timespec="seconds")

    def save(got: Progress, complete: bool) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        results = dict(kept)
        for name, why in absent.items():
            results[name] = {"available": False, "why": why, "measured_at": now}
        for name, outs in got.outcomes.items():
            m = metrics(outs, got.missed, got.normal_s / 3600)
            results[name] = {"available": True, **about.get(name, {}), "complete": complete,
                             "per_type": a.per_type, "seed": a.seed, "only": a.only,
                             "rca_sources": _rca_sources(),
                             "incidents_done": len(got.done), "metrics": m, "goals": _goals(m),
                             "started_at": started, "measured_at": now,
                             "cases": [o.as_dict() for o in outs]}
        write(a.out, specs, results, got.sources, now)

    with tempfile.TemporaryDirectory(prefix="rca-bench-kb-") as kb_folder:
        ready, absent, about = variants(a.variants.split(","), a.models.split(","),
                                        Path(kb_folder))
        for name, why in absent.items():
            print(f"{name}: not available ({why})", file=sys.stderr, flush=True)
        run(specs, ready, a.rebuild, save)
    print(json.dumps(json.loads(a.out.read_text())["table"], indent=1))


def _rca_sources() -> str:
    """A hash of appliance/rca as it ran (the pipeline's parts may not be committed yet)."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted((ROOT / "appliance" / "rca").glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def write(out: Path, specs: list[incidents.Spec], results: dict[str, Any], sources: set[str],
          now: str) -> None:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    summary = {
        "benchmark": "rca",
        "incidents": len(specs),
        "incidents_by_group": {g: sum(s.group == g for s in specs)
                               for g in dict.fromkeys(s.group for s in specs)},
        "generator": incidents.GENERATOR,
        "built_with_sources": sorted(sources), "current_sources": incidents.source_hash(),
        "git_head": commit, "rca_sources": _rca_sources(), "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "default_model": DEFAULT_MODEL, "goals_for": f"full:{DEFAULT_MODEL}",
        "measured_at": now,
        "table": {n: ({k: v["metrics"].get(k) for k in (
            "type_accuracy", "root_cause_at_1", "root_cause_at_3", "answered_right",
            "harmless_change_blamed", "abstention_precision", "over_abstention",
            "false_cases_on_normal", "seconds_p50", "seconds_p95")}
            | {"complete": v.get("complete"), "cases": v["metrics"]["cases"]}
            if v.get("available") else "not available") for n, v in sorted(results.items())},
        "variants": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
