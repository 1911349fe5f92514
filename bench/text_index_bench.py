"""What a text index for the rare-text trace search would cost (issue 9): measured on a
filled store, not built into it.

    PYTHONPATH=. python bench/text_index_bench.py <filled store> [--rows 250000]

The search matches text anywhere in a span's messages (``contains(lower(..))``), so an
index that skips blocks of spans must keep every block a match can be in. Two kinds are
measured, each per block of 2,048 consecutive rows of the day table (rowid ranges, which
DuckDB prunes by row group):

* an n-gram Bloom filter (5-grams at every byte of the lowered text, 2^17 bits a
  block): what one seal's worth of rows (``--rows``) costs to index, how dense the
  filters are, and the share of blocks a rare query (``ticket <8 random digits>:``, as
  bench/query_bench.py asks) still has to read;
* a word Bloom filter, tokenised and hashed by DuckDB itself: its cost.

And, since the fill's text is drawn from a ~60-word vocabulary, how many distinct
n-grams and words 6 MB of real prose holds (the English text files under
/usr/share/doc): what a block's filter would have to hold outside the bench.

Writes bench/results/text-index.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

BLOCK = 2048
N = 5
BITS_LOG2 = 17
_MUL = 0x9E3779B97F4A7C15
_WORD = rb"[0-9a-z\x80-\xff]+"


def _text(a: pa.Array) -> np.ndarray:
    """The bytes of a string array's values, end to end (no copy)."""
    wide = pa.types.is_large_string(a.type)
    offsets = np.frombuffer(a.buffers()[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[a.offset:a.offset + len(a) + 1]
    return np.frombuffer(a.buffers()[2], dtype=np.uint8)[int(offsets[0]):int(offsets[-1])]


def _bloom(chunks: list[np.ndarray]) -> np.ndarray:
    """Bits set by every N-gram of the chunks: 8-byte words at each of the 8 offsets,
    masked to their first N bytes, hashed (multiplicative) to BITS_LOG2 bits. A gram that
    spans two values only adds a bit (a false positive, never a miss)."""
    bits = np.zeros(1 << BITS_LOG2, dtype=bool)
    mask, mul, shift = (np.uint64((1 << (8 * N)) - 1), np.uint64(_MUL),
                        np.uint64(64 - BITS_LOG2))
    for b in chunks:
        for k in range(8):
            m = (len(b) - k) // 8
            if m > 0:
                bits[((b[k:k + 8 * m].view("<u8") & mask) * mul) >> shift] = True
    return bits


def _query_bits(q: str) -> list[int]:
    b = q.encode()
    return [(int.from_bytes(b[i:i + N], "little") * _MUL % (1 << 64)) >> (64 - BITS_LOG2)
            for i in range(len(b) - N + 1)]


def _prose(limit: int = 6 << 20) -> bytes:
    buf = bytearray()
    for f in sorted(Path("/usr/share/doc").rglob("*")):
        if f.is_file() and f.suffix in ("", ".txt", ".md", ".rst") and len(buf) < limit:
            try:
                buf += f.read_bytes().lower()
            except OSError:
                continue
    return bytes(buf[:limit])


def _distinct_grams(b: bytes, n: int) -> int:
    a = np.frombuffer(b, dtype=np.uint8)
    v = np.zeros(len(a) - n + 1, dtype=np.uint64)
    for i in range(n):
        v |= a[i:len(a) - n + 1 + i].astype(np.uint64) << np.uint64(8 * i)
    return int(len(np.unique(v)))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("store")
    p.add_argument("--rows", type=int, default=250_000)
    p.add_argument("--queries", type=int, default=20)
    a = p.parse_args()
    con = duckdb.connect(a.store, read_only=True)
    part, total = con.execute("SELECT name, rows FROM span_partitions ORDER BY rows DESC "
                              "LIMIT 1").fetchall()[0]
    lo = max(0, total // 2 - a.rows // 2)
    rows = f"FROM {part} WHERE rowid >= {lo} AND rowid < {lo + a.rows}"

    t, c = time.perf_counter(), time.process_time()
    tbl = con.sql(f"SELECT lower(input_messages) AS i, lower(output_messages) AS o {rows}"
                  ).to_arrow_table()
    read = {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}
    inp, out = tbl.column(0).combine_chunks(), tbl.column(1).combine_chunks()
    t, c = time.perf_counter(), time.process_time()
    blooms = [_bloom([_text(inp.slice(i, BLOCK)), _text(out.slice(i, BLOCK))])
              for i in range(0, tbl.num_rows, BLOCK)]
    build = {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}
    rng = random.Random(1)
    shares = []
    for _ in range(a.queries):
        bits = _query_bits(f"ticket {rng.randrange(10**8)}:")
        shares.append(sum(all(b[h] for h in bits) for b in blooms) / len(blooms))
    sample = con.execute(f"SELECT lower(input_messages) {rows} LIMIT 1").fetchall()[0][0]
    own = re.search(r"ticket \d+:", sample)
    own_bits = _query_bits(own.group(0)) if own else []
    found = sum(all(b[h] for h in own_bits) for b in blooms) if own else None

    t, c = time.perf_counter(), time.process_time()
    con.execute(
        "SELECT count(*) FROM (SELECT DISTINCT rowid // 2048 AS b, hash(w) % 262144 AS h "
        "FROM (SELECT rowid, unnest(regexp_split_to_array(lower(input_messages) || ' ' || "
        r"lower(output_messages), '[^0-9a-z\x{80}-\x{10FFFF}]+')) AS w " + rows + "))"
    ).fetchall()
    words = {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}

    prose = _prose()
    result = {
        "bench": "text_index_bench", "partition": part, "rows": tbl.num_rows,
        "text_mb": round(tbl.nbytes / 1e6, 1), "block_rows": BLOCK, "blocks": len(blooms),
        "read_and_lower": read,
        "ngram_bloom": {"n": N, "bits": 1 << BITS_LOG2, "build": build,
                        "density_median": float(np.median([b.mean() for b in blooms])),
                        "rare_query_blocks_share": {"mean": statistics.mean(shares),
                                                    "max": max(shares)},
                        "a_stored_ticket_found_in_blocks": found},
        "word_bloom_duckdb": {"build": words},
        "prose_6mb": {"bytes": len(prose),
                      "distinct_ngrams": {n: _distinct_grams(prose, n) for n in (3, 4, 5)},
                      "distinct_words": len(set(re.findall(_WORD, prose)))},
    }
    dest = Path(__file__).resolve().parent / "results" / "text-index.json"
    dest.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
