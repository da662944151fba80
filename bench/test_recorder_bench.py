"""The recorder: append rate per durability mode beside raw writes on the same
disk, recovery scan rate, and SQLite projection rate beside executemany.

Run: ``make bench`` or
``.venv/bin/python -m pytest bench/test_recorder_bench.py --benchmark-only -p no:cacheprovider -s``
(``-s`` shows the records/second lines and the ratios at the end).
Environment: ``REC_BENCH_RECORDS`` (group and none modes, default 200,000),
``REC_BENCH_SYNCED`` (every mode and raw per-record syncs, default 1,000),
``REC_BENCH_BATCH`` (records per group commit, default 1,000),
``REC_BENCH_RECOVERY_MB`` (size of the live segment scanned, default 64),
``REC_BENCH_DIR`` (where the journals go; default pytest's tmp dir).

Records are real `Entry` payloads: the envelopes and events of a seeded
market day (English and sealed lots with bids, a units book with orders and
trades, refusals) run through the engine, encoded once and cycled.
Figures are records (or rows) per second over the fastest round.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest

from exchange.codec import Entry, encode_entry
from exchange.driver import Driver
from recorder.format import KIND_ENTRY
from recorder.journal import Journal, verify_journal
from recorder.store import Store
from tests.integration.journaled import T0, DAY, JournaledDriver, market_day

RECORDS = int(os.environ.get("REC_BENCH_RECORDS", "200000"))
SYNCED = int(os.environ.get("REC_BENCH_SYNCED", "1000"))
BATCH = int(os.environ.get("REC_BENCH_BATCH", "1000"))
RECOVERY_MB = int(os.environ.get("REC_BENCH_RECOVERY_MB", "64"))

FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    base = os.environ.get("REC_BENCH_DIR")
    path = Path(tempfile.mkdtemp(dir=base)) if base else tmp_path_factory.mktemp("recorder-bench")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def payloads() -> list[tuple[int, bytes]]:
    d = Driver(keep_log=True)
    market_day(d, seed=1, bids=400, orders=800)
    pool = [(env.ts, encode_entry(Entry(env, events))) for env, events in d.log]
    size = sum(len(p) for _, p in pool) / len(pool)
    print(f"\nrecords: {len(pool)} distinct Entry payloads, mean {size:.0f} bytes "
          f"(+64 bytes framing), cycled")
    return pool


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if not FIGURES:
        return
    lines = ["", "recorder figures (records/s, rows/s):"]
    lines += [f"  {name:<34} {value:>14,.0f}" for name, value in FIGURES.items()]

    def ratio(a: str, b: str, label: str) -> None:
        if a in FIGURES and b in FIGURES:
            lines.append(f"  {label:<50} {FIGURES[a] / FIGURES[b]:8.2f}x")

    lines.append("ratios:")
    ratio("journal group", "raw write+fdatasync per batch", "group mode / raw write+fdatasync per batch")
    ratio("journal every", "raw write+fdatasync per record", "every mode / raw write+fdatasync per record")
    ratio("journal every, preallocated", "journal every", "every mode preallocated / not")
    ratio("journal none", "raw write per batch (no sync)", "none mode / raw write per batch (no sync)")
    ratio("journal group", "journal every", "group mode / every mode")
    ratio("store projection rows", "plain executemany rows", "projection / plain executemany (rows/s)")
    lines.append(f"goals: group >= 200,000/s: {FIGURES.get('journal group', 0) >= 200_000}; "
                 f"recovery >= 1,000,000/s: {FIGURES.get('recovery scan (open)', 0) >= 1_000_000}")
    print("\n".join(lines))


def _fresh(workdir: Path, name: str) -> Path:
    path = workdir / name
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():
        path.unlink()
    return path


def _work(payloads, n: int) -> list[tuple[int, bytes]]:
    return [payloads[i % len(payloads)] for i in range(n)]


def _rate(benchmark, name: str, count: int) -> None:
    rate = count / benchmark.stats.stats.min
    FIGURES[name] = rate
    benchmark.extra_info["per_second"] = round(rate)
    print(f"\n{name}: {rate:,.0f}/s ({count:,} in {benchmark.stats.stats.min:.3f} s)")


# --------------------------------------------------------------------------
# appends
# --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["group", "none", "every", "every, preallocated"])
def test_append(benchmark, workdir, payloads, mode):
    """Append and commit; "every, preallocated" syncs each record over zeros
    `Journal.reserve` wrote ahead (the file's size never changes)."""
    durability, _, preallocated = mode.partition(", ")
    n = SYNCED if durability == "every" else RECORDS
    work = _work(payloads, n)
    batches = [work[i:i + BATCH] for i in range(0, n, BATCH)]

    def setup():
        journal = Journal.open(_fresh(workdir, f"append-{durability}"), durability=durability,
                               preallocate=(n * 700 + (1 << 20)) if preallocated else 0)
        journal.reserve()
        return (journal,), {}

    def run(journal: Journal) -> None:
        append = journal.append
        for batch in batches:
            for ts, payload in batch:
                append(ts, KIND_ENTRY, payload)
            journal.commit()
        journal.close()

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    _rate(benchmark, f"journal {mode}", n)


@pytest.mark.parametrize("shape", ["per record", "per batch", "per batch (no sync)"])
def test_raw_write(benchmark, workdir, payloads, shape):
    n = SYNCED if shape == "per record" else RECORDS
    work = [payload for _, payload in _work(payloads, n)]
    joined = [b"".join(work[i:i + BATCH]) for i in range(0, n, BATCH)]

    def setup():
        path = _fresh(workdir, "raw.bin")
        return (os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),), {}

    def per_record(fd: int) -> None:
        for payload in work:
            os.write(fd, payload)
            os.fdatasync(fd)
        os.close(fd)

    def per_batch(fd: int) -> None:
        for data in joined:
            os.write(fd, data)
            os.fdatasync(fd)
        os.close(fd)

    def no_sync(fd: int) -> None:
        for data in joined:
            os.write(fd, data)
        os.close(fd)

    run = {"per record": per_record, "per batch": per_batch, "per batch (no sync)": no_sync}[shape]
    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    name = {"per record": "raw write+fdatasync per record", "per batch": "raw write+fdatasync per batch",
            "per batch (no sync)": "raw write per batch (no sync)"}[shape]
    _rate(benchmark, name, n)


# --------------------------------------------------------------------------
# recovery and reading
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_journal(workdir, payloads) -> tuple[Path, int]:
    """One live segment of about REC_BENCH_RECOVERY_MB megabytes."""
    path = _fresh(workdir, "recovery")
    journal = Journal.open(path, durability="none", segment_bytes=1 << 40)
    target = RECOVERY_MB << 20
    i = 0
    while journal.segments()[-1].size < target:
        for _ in range(BATCH):
            ts, payload = payloads[i % len(payloads)]
            journal.append(ts, KIND_ENTRY, payload)
            i += 1
        journal.commit()
    journal.close()
    return path, i


def test_recovery_scan(benchmark, big_journal):
    """Open for writing: check the live segment record by record (length,
    CRC-32, sequence) and find its end, as start-up after a crash does."""
    path, count = big_journal

    def run() -> None:
        journal = Journal.open(path)
        assert journal.last_seq == count
        journal.close()

    benchmark.pedantic(run, rounds=3, iterations=1)
    _rate(benchmark, "recovery scan (open)", count)


def test_read_all(benchmark, big_journal):
    path, count = big_journal

    def run() -> None:
        n = 0
        for _ in Journal.open_readonly(path).read():
            n += 1
        assert n == count

    benchmark.pedantic(run, rounds=3, iterations=1)
    _rate(benchmark, "read (Record objects)", count)


def test_verify(benchmark, big_journal):
    path, count = big_journal
    benchmark.pedantic(lambda: verify_journal(path), rounds=2, iterations=1)
    _rate(benchmark, "verify (CRC + SHA-256 chain)", count)


# --------------------------------------------------------------------------
# the analyst store
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def market_journal(workdir) -> Path:
    path = _fresh(workdir, "market")
    journal = Journal.open(path)
    d = JournaledDriver(journal)
    for day in range(3):
        market_day(d, seed=100 + day, bids=1500, orders=3000, start=T0 + 2 * day * DAY, session=f"S{day}")
    journal.close()
    return path


def _rows(db_path: Path) -> int:
    db = sqlite3.connect(db_path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name != '_meta'")]
    total = sum(db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables)
    db.close()
    return total


def test_store_projection(benchmark, workdir, market_journal):
    db_path = workdir / "store.sqlite"

    def setup():
        _fresh(workdir, "store.sqlite")
        return (), {}

    def run() -> None:
        with Store.open(db_path) as store:
            store.update(market_journal)

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    rows = _rows(db_path)
    print(f"\nstore: {rows:,} rows in every table from {Journal.open_readonly(market_journal).last_seq:,} entries")
    _rate(benchmark, "store projection rows", rows)


def test_plain_executemany(benchmark, workdir, market_journal):
    """The floor: as many rows as the projection writes, 8 columns like a
    typical event table, one executemany in one transaction."""
    with Store.open(workdir / "count.sqlite") as store:
        store.update(market_journal)
    n = _rows(workdir / "count.sqlite")
    rows = [(i, i % 7, T0 + i, "[]", "S1-L1", "S1", 101 + i % 6, 100_000 + i) for i in range(n)]
    db_path = workdir / "plain.sqlite"

    def setup():
        _fresh(workdir, "plain.sqlite")
        return (), {}

    def run() -> None:
        db = sqlite3.connect(db_path)
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE t (seq INTEGER, n INTEGER, ts INTEGER, audience TEXT, serial TEXT, "
                   "session TEXT, paddle INTEGER, price INTEGER, PRIMARY KEY (seq, n))")
        with db:
            db.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.close()

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    _rate(benchmark, "plain executemany rows", n)
