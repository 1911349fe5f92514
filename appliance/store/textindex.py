"""Block filters for the text search: which blocks of a sealed partition a text can be in.

The trace search's text filter matches text anywhere in a span's messages
(``contains(lower(..), lower(text))``), so a text that matches nothing used to read all
the message text in the range (10M spans: 5.3-5.6 s). This index lets it skip blocks:

* A block is ``BLOCK_ROWS`` consecutive rows of a partition table, by row id. Partitions
  are append-only (a seal appends, retention drops whole tables), so a block's rows never
  change once it is full, and DuckDB prunes row groups on row id ranges.
* A block's filter is a Bloom filter (one hash) of every ``N``-byte sequence of the
  lowered input and output message text. A text of ``N`` bytes or more can only be in a
  block whose filter has every one of its sequences set; a sequence that spans two values
  only sets one more bit (a false positive, never a miss). Shorter texts scan as before.
* The filter size adapts to the text: built at ``2**MAX_BITS`` bits and halved (OR of
  bit pairs: the index is the hash's top bits) while it stays at most ``MAX_DENSITY``
  full. Repetitive text gets small filters, varied prose large ones
  (docs/store-design.md, "Rare text").
* Filters are built after the seal, by the daemon's indexer on its own thread within a
  CPU budget (``text_index_cpu``), not on the ingest path, and not at all while ingest
  keeps the store busy (``YIELD_ABOVE``). Rows not indexed yet (the last
  partial block, partitions the indexer has not reached, the hot table) are scanned as
  before, so an answer never depends on how far the indexer got.
* Each build commits the filters of whole blocks in one transaction, checking that the
  partition still exists and those blocks are not indexed yet; retention deletes a
  dropped partition's filters in its own transaction. After a kill -9 the index is as of
  the last commit, and the indexer goes on from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from appliance.store.database import Database

TABLE = "span_text_pieces"
# A block's filter of 2**bits bits (bit i: the hash's top ``bits`` bits = i) is kept as
# ``PIECES`` columns ``f0``, ``f1``, ... of 2**(bits - PIECE_SHIFT) bits each, piece j
# holding its bits j * 2**(bits - PIECE_SHIFT) onwards. A sequence's piece is the top
# ``PIECE_SHIFT`` bits of its hash whatever the filter's size, so a search reads only
# the columns of its sequences' pieces (BIT: DuckDB reads one bit with get_bit): on
# prose-sized filters a tenth to a twentieth of them (docs/store-design.md, "Rare text").
PIECE_SHIFT = 8
PIECES = 1 << PIECE_SHIFT
DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (part VARCHAR NOT NULL, lo BIGINT NOT NULL, "
       "hi BIGINT NOT NULL, bits UTINYINT NOT NULL, "
       + ", ".join(f"f{j} BIT NOT NULL" for j in range(PIECES)) + ")")
# The first layout (one BIT column of the whole filter, read whole by every search):
# dropped by migration 5, its filters built again in the new one by the indexer.
V4_TABLE = "span_text_blocks"
V4_DDL = (f"CREATE TABLE IF NOT EXISTS {V4_TABLE} (part VARCHAR NOT NULL, lo BIGINT NOT NULL, "
          "hi BIGINT NOT NULL, bits UTINYINT NOT NULL, filter BIT NOT NULL)")
BLOCK_ROWS = 2048
N = 5
MAX_BITS = 20  # 128 KB a block: ~26 % full for 2,048 spans of varied English prose
MIN_BITS = 12  # pieces of 16 bits at least: whole bytes
MAX_DENSITY = 0.25
_MUL = np.uint64(0x9E3779B97F4A7C15)
_MASK = np.uint64((1 << (8 * N)) - 1)
# A block whose filter keeps more than this share of a partition is not worth the row id
# ranges: the partition is scanned whole.
_MAX_KEPT = 0.5
_MAX_RANGES = 256
# The indexer builds nothing while ingest keeps the store busy more than this share of
# the time: at full rate its budget's worth of work cost ingest far more than its own CPU
# (10M fill, sustained 10k/s offered: 5,348 stored/s with it, 7,667 without;
# docs/store-design.md).
YIELD_ABOVE = 0.1


def forget_dropped(con: duckdb.DuckDBPyConnection) -> None:
    """Delete the filters of partitions that no longer exist (in retention's transaction)."""
    con.execute(f"DELETE FROM {TABLE} WHERE part NOT IN (SELECT name FROM span_partitions)")


# ---------------------------------------------------------------------- building


def _bytes(a: pa.Array) -> np.ndarray:
    """The bytes of a string array's values, end to end (a view, no copy)."""
    if not (pa.types.is_string(a.type) or pa.types.is_large_string(a.type)):
        a = a.cast(pa.large_string())  # e.g. a string view
    buffers = a.buffers()
    if a.null_count == len(a) or buffers[2] is None:
        return np.zeros(0, dtype=np.uint8)
    wide = pa.types.is_large_string(a.type)
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[a.offset:a.offset + len(a) + 1]
    return np.frombuffer(buffers[2], dtype=np.uint8)[int(offsets[0]):int(offsets[-1])]


def block_filter(chunks: Iterable[np.ndarray]) -> tuple[int, bytes]:
    """(bits, filter) of the lowered text in ``chunks``: each ``N``-byte sequence hashed
    (multiplicative) to its top ``MAX_BITS`` bits, then folded while it stays sparse."""
    bits: np.ndarray = np.zeros(1 << MAX_BITS, dtype=bool)
    shift = np.uint64(64 - MAX_BITS)
    for b in chunks:
        # The sequences at every offset k, k+8, ...: 8-byte words masked to N bytes.
        for k in range(8):
            m = (len(b) - k) // 8
            if m > 0:
                words = b[k:k + 8 * m].view("<u8") & _MASK
                bits[(words * _MUL) >> shift] = True
            # the last sequences, which a whole 8-byte word would run past the end for
            tail = b[k + 8 * max(m, 0):]
            if len(tail) >= N:
                bits[_hash(bytes(tail[:N])) >> (64 - MAX_BITS)] = True
    n = MAX_BITS
    while n > MIN_BITS:
        folded = np.logical_or(bits[0::2], bits[1::2])
        if folded.mean() > MAX_DENSITY:
            break
        bits, n = folded, n - 1
    return n, np.packbits(bits, bitorder="big").tobytes()


def _hash(gram: bytes) -> int:
    return (int.from_bytes(gram.ljust(8, b"\0"), "little") * int(_MUL)) % (1 << 64)


def text_grams(lowered: bytes) -> list[int]:
    """The 64-bit hashes of every ``N``-byte sequence of a lowered text."""
    return sorted({_hash(lowered[i:i + N]) for i in range(len(lowered) - N + 1)})


def _pending(db: Database) -> list[tuple[str, int, int]]:
    """(partition, first row not indexed, rows) of the partitions with a whole block left."""
    found = db.read(
        f"SELECT p.name, coalesce(max(t.hi), 0) AS done, p.rows FROM span_partitions p "
        f"LEFT JOIN {TABLE} t ON t.part = p.name GROUP BY p.name, p.rows "
        "ORDER BY max(p.first_hour) DESC")
    return [(r["name"], int(r["done"]), int(r["rows"])) for r in found
            if int(r["rows"]) - int(r["done"]) >= BLOCK_ROWS]


def build(db: Database, part: str, lo: int, blocks: int) -> int:
    """Index ``blocks`` whole blocks of ``part`` from row ``lo``; returns the rows indexed
    (0 when the partition is gone or another build got there first)."""
    hi = lo + blocks * BLOCK_ROWS
    try:
        table = db.read_arrow(
            f"SELECT lower(input_messages) AS i, lower(output_messages) AS o FROM {part} "
            f"WHERE rowid >= {int(lo)} AND rowid < {int(hi)} ORDER BY rowid")
    except duckdb.CatalogException:
        return 0  # dropped by retention since it was listed
    if table.num_rows != hi - lo:
        return 0  # not that many rows (yet): never index a partial block
    i, o = table.column("i").combine_chunks(), table.column("o").combine_chunks()
    rows = []
    for start in range(0, hi - lo, BLOCK_ROWS):
        n, f = block_filter([_bytes(i.slice(start, BLOCK_ROWS)),
                             _bytes(o.slice(start, BLOCK_ROWS))])
        rows.append((part, lo + start, lo + start + BLOCK_ROWS, n, f))
    with db.transaction() as con:
        alive = con.execute("SELECT count(*) FROM span_partitions WHERE name = ?",
                            [part]).fetchall()[0][0]
        done = con.execute(f"SELECT coalesce(max(hi), 0) FROM {TABLE} WHERE part = ?",
                           [part]).fetchall()[0][0]
        if not alive or int(done) != lo:
            return 0
        insert_filters(con, rows)
    return hi - lo


def insert_filters(con: duckdb.DuckDBPyConnection,
                   rows: Sequence[tuple[str, int, int, int, bytes]]) -> None:
    """Store (partition, lo, hi, bits, filter) rows, each filter cut into its pieces."""
    size = [len(f) // PIECES for *_, f in rows]
    table = pa.table({
        "part": [r[0] for r in rows], "lo": [r[1] for r in rows], "hi": [r[2] for r in rows],
        "bits": pa.array([r[3] for r in rows], pa.uint8()),
        **{f"f{j}": pa.array([f[j * k:(j + 1) * k] for (*_, f), k in zip(rows, size,
                                                                         strict=True)],
                             pa.binary())
           for j in range(PIECES)}})
    con.register("_filters", table)
    try:
        con.execute(f"INSERT INTO {TABLE} SELECT part, lo, hi, bits, "
                    + ", ".join(f"CAST(f{j} AS BIT)" for j in range(PIECES))
                    + " FROM _filters")
    finally:
        con.unregister("_filters")


@dataclass
class Indexer:
    """Builds filters for what the seals have added, at most ``cpu_share`` of one core
    on average: after a build that took t seconds it rests t / cpu_share - t. t is wall
    time, not this thread's CPU: DuckDB reads and lowers the text on its own threads, and
    on a busy machine the waits count too, so the indexer yields more when ingest is
    busy."""

    db: Database
    cpu_share: float
    chunk_blocks: int = 16  # ~32k spans, ~70 MB of text read at a time
    # Seconds the store has spent storing spans so far (``SpanStore.busy_seconds``):
    # while ingest keeps it busier than ``YIELD_ABOVE`` of the time, nothing is built.
    busy: Callable[[], float] | None = None
    _last: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        self._last = (time.monotonic(), self.busy() if self.busy else 0.0)

    def ingest_busy(self) -> bool:
        """Whether ingest kept the store busier than ``YIELD_ABOVE`` since the last call."""
        if self.busy is None:
            return False
        now, busy = time.monotonic(), self.busy()
        (then, before), self._last = self._last, (now, busy)
        return (busy - before) > YIELD_ABOVE * (now - then)

    def step(self) -> tuple[int, float]:
        """One build of the newest pending partition; (rows indexed, seconds to rest
        before the next step). Nothing pending, or ingest busy: (0, 0)."""
        if self.ingest_busy():
            return 0, 0.0
        for part, done, rows in _pending(self.db):
            blocks = min(self.chunk_blocks, (rows - done) // BLOCK_ROWS)
            t0 = time.perf_counter()
            indexed = build(self.db, part, done, blocks)
            spent = time.perf_counter() - t0
            return indexed, spent / self.cpu_share - spent
        return 0, 0.0


def indexed_rows(db: Database) -> int:
    """Rows of the sealed partitions that the filters cover."""
    return int(db.read(f"SELECT coalesce(sum(hi - lo), 0) AS n FROM {TABLE}")[0]["n"])


# ---------------------------------------------------------------------- reading


def candidate_rows(db: Database, parts: Sequence[str], lowered: bytes) -> dict[str, str]:
    """For each of ``parts`` worth restricting: a row id condition (SQL over constants)
    that keeps every row where ``lowered`` can be, i.e. the blocks whose filter holds all
    its sequences, and every row not indexed. A partition missing from the answer is
    read whole. Texts shorter than ``N`` bytes get no conditions."""
    grams = text_grams(lowered)
    if not grams or not parts:
        return {}
    # One test per filter size, reading only the pieces that hold the sequences' bits.
    tests = " ".join(
        f"WHEN {n} THEN " + " AND ".join(
            f"get_bit(f{i >> (n - PIECE_SHIFT)}, {i & ((1 << (n - PIECE_SHIFT)) - 1)}) = 1"
            for i in sorted({g >> (64 - n) for g in grams}))
        for n in range(MIN_BITS, MAX_BITS + 1))
    found = db.read(f"SELECT part, lo, hi, CASE bits {tests} END AS keep FROM {TABLE} "
                    "WHERE part IN (SELECT unnest($1::VARCHAR[])) ORDER BY part, lo",
                    [list(parts)])
    blocks: dict[str, list[tuple[int, int, bool]]] = {}
    for r in found:
        blocks.setdefault(r["part"], []).append((int(r["lo"]), int(r["hi"]), bool(r["keep"])))
    out: dict[str, str] = {}
    for part, mine in blocks.items():
        kept = [(lo, hi) for lo, hi, keep in mine if keep]
        ranges = _runs(kept)
        if len(kept) > _MAX_KEPT * len(mine) or len(ranges) > _MAX_RANGES:
            continue
        done = max(hi for _, hi, _ in mine)
        conds = [f"rowid >= {done}"] + [f"rowid BETWEEN {a} AND {b - 1}" for a, b in ranges]
        out[part] = "(" + " OR ".join(conds) + ")"
    return out


def _runs(blocks: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent [lo, hi) blocks merged."""
    runs: list[tuple[int, int]] = []
    for a, b in blocks:
        if runs and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((a, b))
    return runs
