"""The text index as built (appliance.store.textindex): what it costs to build on a
filled store, and how it behaves on real prose, where the fill's small vocabulary
flatters it.

    PYTHONPATH=. .venv/bin/python bench/text_index_built_bench.py --db <a filled store, a copy>

* Build: the filters of ``--rows`` sealed spans of the store (its index emptied first),
  by the daemon's ``Indexer`` with no CPU cap: CPU per span, filter bytes per span and
  the filter sizes chosen. (Search times at 10M come from bench/query_bench.py.)
* Prose: blocks of 4 MB (2,048 spans of 2 KB) of the English text files under
  /usr/share/doc: the filter size chosen and how full it is; for a text in none of them
  (``ticket <8 digits>:``) and for 16-byte pieces of the prose (each in at least one
  block), the share of blocks a search still reads, and of the blocks without the piece
  (false positives).
* Search cost at prose size: as many blocks as 10M spans make (4,883) with the prose's
  filters, in a DuckDB file of their own: the time ``candidate_rows`` takes (it reads
  bits, so this grows with the filters' size).

Writes bench/results/text-index-built.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from text_index_bench import _prose  # noqa: E402  (this folder: the one before the index)

from appliance.store import textindex  # noqa: E402
from appliance.store.database import Database  # noqa: E402
from appliance.store.spans import SpanStore  # noqa: E402

BLOCK_TEXT = 2048 * 2048


def _ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"n": len(s), "p50_ms": round(statistics.median(s) * 1000, 1),
            "p95_ms": round(s[min(len(s) - 1, round(0.95 * (len(s) - 1)))] * 1000, 1)}


def build(db_path: Path, rows: int) -> dict[str, object]:
    store = SpanStore(db_path)
    try:
        with store.db.transaction() as con:
            con.execute(f"DELETE FROM {textindex.TABLE}")
        indexer = textindex.Indexer(store.db, cpu_share=1.0)
        done, cpu, wall = 0, time.process_time(), time.perf_counter()
        while done < rows:
            n, _ = indexer.step()
            if not n:
                break
            done += n
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        sizes = store.read(f"SELECT bits, count(*) AS blocks, sum((1::BIGINT << bits) // 8) "
                           f"AS bytes FROM {textindex.TABLE} GROUP BY bits ORDER BY bits")
        total = sum(int(r["bytes"]) for r in sizes)
        return {"rows": done, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
                "cpu_us_per_span": round(cpu / done * 1e6, 1),
                "cores_at_10k_spans_per_s": round(cpu / done * 10_000, 3),
                "filter_bytes_per_span": round(total / done, 1),
                "sizes": [{"bits": r["bits"], "blocks": r["blocks"]} for r in sizes]}
    finally:
        store.close()


def prose(text: bytes, queries: int) -> tuple[dict[str, object], list[tuple[int, bytes]]]:
    blocks = [text[i:i + BLOCK_TEXT] for i in range(0, len(text) - BLOCK_TEXT + 1, BLOCK_TEXT)]
    filters = [textindex.block_filter([np.frombuffer(b, dtype=np.uint8)]) for b in blocks]
    bits = [np.unpackbits(np.frombuffer(f, dtype=np.uint8), bitorder="big")
            for _, f in filters]

    def kept(q: bytes) -> float:
        grams = textindex.text_grams(q)
        return sum(all(b[g >> (64 - n)] for g in grams)
                   for (n, _), b in zip(filters, bits, strict=True)) / len(blocks)

    def kept_without(q: bytes) -> tuple[int, int]:
        """(blocks read that do not hold q, blocks that do not hold q)"""
        grams = textindex.text_grams(q)
        without = [k for k, b in enumerate(blocks) if q not in b]
        return sum(all(bits[k][g >> (64 - filters[k][0])] for g in grams)
                   for k in without), len(without)

    rng = random.Random(1)
    absent = [kept(f"ticket {rng.randrange(10**8)}:".encode()) for _ in range(queries)]
    present, false_read, false_all = [], 0, 0
    for _ in range(queries):
        b = rng.choice(blocks)
        at = rng.randrange(len(b) - 16)
        present.append(kept(b[at:at + 16]))
        read, out_of = kept_without(b[at:at + 16])
        false_read, false_all = false_read + read, false_all + out_of
    return ({"blocks": len(blocks), "block_text_bytes": BLOCK_TEXT,
             "bits": [n for n, _ in filters],
             "density": [round(float(b.mean()), 3) for b in bits],
             "filter_bytes_per_span": round(statistics.mean(len(f) for _, f in filters) / 2048,
                                            1),
             "absent_text_blocks_read": {"mean": round(statistics.mean(absent), 4),
                                         "max": max(absent)},
             "present_16_bytes_blocks_read": {"mean": round(statistics.mean(present), 4),
                                              "max": max(present),
                                              "one_block_share": round(1 / len(blocks), 4),
                                              "blocks_without_it_read": round(
                                                  false_read / max(1, false_all), 4)}},
            filters)


def _distinct(filters: list[tuple[int, bytes]], k: int) -> tuple[int, bytes]:
    """A filter of the size and fill of prose filter ``k % len``, its bits drawn at random:
    no two alike. (Copies, even rotated, are compressed together by DuckDB's zstd and read
    far less than distinct filters would.)"""
    n, f = filters[k % len(filters)]
    density = float(np.unpackbits(np.frombuffer(f, dtype=np.uint8)).mean())
    bits = np.random.default_rng(k).random(1 << n) < density
    return n, np.packbits(bits, bitorder="big").tobytes()


def search_cost(filters: list[tuple[int, bytes]], blocks: int, reps: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "filters.duckdb")
        try:
            with db.transaction() as con:
                con.execute(textindex.DDL)
                for first in range(0, blocks, 64):
                    textindex.insert_filters(con, [
                        ("spans_p20260101", k * 2048, (k + 1) * 2048, *_distinct(filters, k))
                        for k in range(first, min(blocks, first + 64))])
            db.checkpoint()
            rng = random.Random(2)
            times = []
            for _ in range(reps):
                q = f"ticket {rng.randrange(10**8)}:".encode()
                t = time.perf_counter()
                textindex.candidate_rows(db, ["spans_p20260101"], q)
                times.append(time.perf_counter() - t)
            return {"blocks": blocks, "filter_mb": round(db.file_bytes() / 1e6, 1),
                    "candidate_rows": _ms(times)}
        finally:
            db.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", type=Path, required=True, help="a filled store (a copy)")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--reps", type=int, default=15)
    a = p.parse_args()
    result: dict[str, object] = {
        "bench": "text_index_built_bench",
        "command": f"PYTHONPATH=. .venv/bin/python bench/text_index_built_bench.py --db {a.db} "
                   f"--rows {a.rows} --queries {a.queries} --reps {a.reps}",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "block_rows": textindex.BLOCK_ROWS, "n": textindex.N,
        "max_density": textindex.MAX_DENSITY}
    result["build_on_the_fill"] = build(a.db, a.rows)
    print(json.dumps(result, indent=2), flush=True)
    text = _prose(limit=1 << 40)  # all of it (~33 MB)
    result["prose"], filters = prose(text, a.queries)
    result["prose"]["bytes"] = len(text)  # type: ignore[index]
    print(json.dumps(result["prose"], indent=2), flush=True)
    result["search_cost_10M_at_prose_size"] = search_cost(filters, 4883, a.reps)
    dest = Path(__file__).resolve().parent / "results" / "text-index-built.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["search_cost_10M_at_prose_size"], indent=2))


if __name__ == "__main__":
    main()
