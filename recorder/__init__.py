"""The recorder: the journal, snapshots, the one recovery path, the analyst store.

- `recorder.journal`: append-only segment files, CRC-32 framing, SHA-256 chain,
  group commit, recovery of the live segment, sparse index, `verify_journal`.
- `recorder.format`: the bytes (see PROTOCOL.md, "Journal").
- `recorder.memory`: an in-memory backend with the same interface and hashes.
- `recorder.snapshots`: atomic, checksummed engine snapshots.
- `recorder.recovery`: `rebuild()` = latest snapshot + journal after it.
- `recorder.store`: the SQLite analyst store (README, "Analyst store (SQLite)").
- `recorder.layout`: DATA/journal/, DATA/snapshots/, DATA/analyst.sqlite.
- `recorder.cli`: ``lotex journal verify|head|dump|project``.
"""
