"""Damage: truncate the journal at every byte, flip every byte.

Recovery must always yield exactly a prefix of what was written, never a
wrong record; `verify` must notice every flipped byte.

The exhaustive loops run on bytes in memory through the same pure functions
the journal uses on files (`scan_live`, `check_closed`, `segment_records`,
`verify_segment`); sampled cases also go through real files and
`Journal.open` / `verify_journal`. `recorder.format.scan` is a left fold over
records, so the exhaustive truncation loop resumes it at the last whole
record before the cut with the state a clean scan had there (the bytes before
are identical); every 11th offset is also scanned from the start.
"""

from __future__ import annotations

import bisect
import os
import random
from pathlib import Path

import pytest

from recorder import format as fmt
from recorder.format import Record
from recorder.journal import (Journal, JournalCorrupt, check_closed, scan_live, segment_records,
                              verify_journal, verify_segment)

SEED = int(os.environ.get("LOTEX_DAMAGE_SEED", "4242"))
RECORDS = 1000


def payload(seq: int, rng: random.Random) -> bytes:
    return b"%d:" % seq + rng.randbytes(rng.randrange(0, 12))


def write_journal(path: Path, segment_bytes: int) -> list[Record]:
    rng = random.Random(SEED)
    journal = Journal.open(path, segment_bytes=segment_bytes)
    for i in range(RECORDS):
        journal.append(1_700_000_000_000_000_000 + i * 1_000, fmt.KIND_ENTRY, payload(i + 1, rng))
        if rng.random() < 0.2:
            journal.commit()
    journal.commit()
    live = journal.segments()[-1]
    while journal.last_seq - live.first_seq < 4:     # keep some records in the live segment
        journal.append(1_800_000_000_000_000_000, fmt.KIND_ENTRY, payload(journal.last_seq + 1, rng))
    journal.close()
    records = list(Journal.open_readonly(path).read())
    assert len(records) == journal.last_seq >= RECORDS
    return records


def seg_paths(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix == ".seg")


def recovered_live(data: bytes, path: Path, first_seq: int, prev_chain: bytes) -> tuple[list[Record], int]:
    """What opening the journal keeps of a live segment: its records and size."""
    found = scan_live(data, path, first_seq, prev_chain, 1 << 20)
    seg = found.segment
    end = seg.size - fmt.FOOTER_SIZE if seg.closed else seg.size
    records = [rec for batch in segment_records(data, seg, end=end, start_seq=first_seq,
                                                 start_pos=fmt.HEADER_SIZE, from_seq=1, verify_chain=False,
                                                 to_the_end=True)
               for rec in batch]
    return records, seg.size


# --------------------------------------------------------------------------
# truncation
# --------------------------------------------------------------------------

def test_truncation_at_every_byte_recovers_exactly_a_prefix(tmp_path):
    records = write_journal(tmp_path / "j", segment_bytes=1 << 30)
    (live,) = seg_paths(tmp_path / "j")
    data = live.read_bytes()
    ends, chains = [fmt.HEADER_SIZE], [fmt.GENESIS]
    for rec in records:
        ends.append(ends[-1] + fmt.RECORD_OVERHEAD + len(rec.payload))
        chains.append(rec.chain)
    assert ends[-1] == len(data)
    for cut in range(len(data) + 1):
        whole = bisect.bisect_right(ends, cut) - 1 if cut >= fmt.HEADER_SIZE else 0
        keep = ends[whole] if cut >= fmt.HEADER_SIZE else fmt.HEADER_SIZE
        if cut <= fmt.HEADER_SIZE or cut % 11 == 0 or cut == len(data):
            got, size = recovered_live(data[:cut], live, 1, fmt.GENESIS)
            assert got == records[:whole], f"cut at {cut} (seed {SEED})"
            assert size == keep, f"cut at {cut}"
        else:
            # resume the fold at the last whole record before the cut
            scan = fmt.scan(data, ends[whole], cut, whole + 1, chains[whole], 1 << 20)
            assert (scan.count, scan.pos) == (0, ends[whole]), f"cut at {cut} (seed {SEED})"
            assert scan.reason in (fmt.INCOMPLETE, fmt.CLEAN)


def test_truncated_files_reopen_to_a_prefix_and_continue(tmp_path):
    records = write_journal(tmp_path / "j", segment_bytes=1 << 30)
    (live,) = seg_paths(tmp_path / "j")
    data = live.read_bytes()
    rng = random.Random(SEED)
    cuts = sorted({*range(0, 70), *rng.sample(range(len(data)), 150), len(data) - 1, len(data)})
    for cut in cuts:
        live.write_bytes(data[:cut])
        for extra in live.parent.glob("*.cut"):
            extra.unlink()
        journal = Journal.open(tmp_path / "j")
        got = list(journal.read())
        assert got == records[:len(got)], f"cut at {cut} (seed {SEED})"
        if cut < len(data):
            assert len(got) < len(records)
        seq = journal.append(5, 1, b"after the cut")
        journal.commit()
        assert seq == len(got) + 1
        journal.close()
        assert verify_journal(tmp_path / "j").count == len(got) + 1
        live.write_bytes(data)


# --------------------------------------------------------------------------
# flipped bytes
# --------------------------------------------------------------------------

class Segments:
    """The clean journal, segment by segment, with the links between them."""

    def __init__(self, path: Path, records: list[Record]) -> None:
        self.paths = seg_paths(path)
        self.data = [p.read_bytes() for p in self.paths]
        self.by_seq = {rec.seq: rec for rec in records}
        self.starts: list[tuple[int, bytes]] = []      # (first seq, previous chain)
        self.ends: list[tuple[int, bytes]] = []        # (next seq, chain)
        next_seq, chain = 1, fmt.GENESIS
        for i, data in enumerate(self.data):
            self.starts.append((next_seq, chain))
            next_seq, chain, _ = verify_segment(data, self.paths[i].name, next_seq, chain,
                                                last=i == len(self.data) - 1)
            self.ends.append((next_seq, chain))

    def verify_detects(self, i: int, damaged: bytes) -> bool:
        """Does verify_journal fail on the journal with segment i replaced?
        (The others are the clean ones, which pass on their own.)"""
        first, prev = self.starts[i]
        last = i == len(self.data) - 1
        try:
            result = verify_segment(damaged, self.paths[i].name, first, prev, last=last)
        except JournalCorrupt:
            return True
        # the next segment's header must link to what this one ends with
        return not last and result[:2] != self.ends[i]

    def read_back(self, i: int, damaged: bytes) -> list[Record]:
        """Records that opening and reading the journal yields from segment i
        before it stops or raises (as Journal.open and Journal.read do)."""
        first, prev = self.starts[i]
        path = self.paths[i]
        got: list[Record] = []
        try:
            if i == len(self.data) - 1:
                got, _ = recovered_live(damaged, path, first, prev)
            else:
                seg = check_closed(path, damaged[:fmt.HEADER_SIZE], damaged[-fmt.FOOTER_SIZE:],
                                   len(damaged), first, prev)
                for batch in segment_records(damaged, seg, end=seg.size - fmt.FOOTER_SIZE, start_seq=first,
                                             start_pos=fmt.HEADER_SIZE, from_seq=1, verify_chain=False,
                                             to_the_end=True):
                    got.extend(batch)
        except JournalCorrupt:
            pass
        return got


def test_every_flipped_byte_is_detected_and_never_read_as_good(tmp_path):
    records = write_journal(tmp_path / "j", segment_bytes=2048)
    segments = Segments(tmp_path / "j", records)
    assert len(segments.data) > 10
    assert segments.ends[-1][0] - segments.starts[-1][0] > 3, "the live segment should hold records"
    flips = 0
    for i, clean in enumerate(segments.data):
        damaged = bytearray(clean)
        for offset in range(len(clean)):
            damaged[offset] ^= 0xFF
            frozen = bytes(damaged)
            damaged[offset] ^= 0xFF
            assert segments.verify_detects(i, frozen), f"{segments.paths[i].name} byte {offset} (seed {SEED})"
            for rec in segments.read_back(i, frozen):
                assert rec == segments.by_seq[rec.seq], f"{segments.paths[i].name} byte {offset}: damaged record"
            flips += 1
    assert flips == sum(len(d) for d in segments.data) > RECORDS * fmt.RECORD_OVERHEAD


def test_flipped_bytes_in_files(tmp_path):
    records = write_journal(tmp_path / "j", segment_bytes=2048)
    paths = seg_paths(tmp_path / "j")
    clean = {p: p.read_bytes() for p in paths}
    rng = random.Random(SEED)
    cases = [(paths[-1], off) for off in rng.sample(range(len(clean[paths[-1]])), 60)]
    cases += [(p, rng.randrange(len(clean[p]))) for p in rng.choices(paths[:-1], k=60)]
    for path, offset in cases:
        damaged = bytearray(clean[path])
        damaged[offset] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        with pytest.raises(JournalCorrupt):
            verify_journal(tmp_path / "j")
        try:
            journal = Journal.open(tmp_path / "j", segment_bytes=2048)
            got = []
            try:
                got.extend(journal.read())
            except JournalCorrupt:
                pass
            journal.close()
        except JournalCorrupt:
            got = []
        assert got == records[:len(got)], f"{path.name} byte {offset} (seed {SEED})"
        for p in paths:
            p.write_bytes(clean[p])
        for extra in list(path.parent.glob("*.cut")) + list(path.parent.glob("*.idx")):
            extra.unlink()
        for p in seg_paths(tmp_path / "j"):
            if p not in clean:
                p.unlink()


# --------------------------------------------------------------------------
# damage with good records after it: refused, not cut
# --------------------------------------------------------------------------

def record_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each record of a live segment's clean bytes."""
    spans, pos = [], fmt.HEADER_SIZE
    while pos + fmt.RECORD_OVERHEAD <= len(data):
        length = fmt.RECORD_HEAD.unpack_from(data, pos)[1]
        if not any(data[pos:pos + fmt.RECORD_OVERHEAD]):
            break                                      # the zeros after the last record
        spans.append((pos, pos + fmt.RECORD_OVERHEAD + length))
        pos = spans[-1][1]
    return spans


def test_a_flip_in_a_live_record_that_good_records_follow_is_refused_never_cut(tmp_path):
    records = write_journal(tmp_path / "j", segment_bytes=4096)
    segments = Segments(tmp_path / "j", records)
    clean, path = segments.data[-1], segments.paths[-1]
    first, prev = segments.starts[-1]
    spans = record_spans(clean)
    assert len(spans) > 3
    for k, (start, end) in enumerate(spans):
        for offset in range(start, end):
            damaged = bytearray(clean)
            damaged[offset] ^= 0xFF
            if k < len(spans) - 1:
                with pytest.raises(JournalCorrupt, match="good records follow it"):
                    scan_live(bytes(damaged), path, first, prev, 1 << 20)
            else:                    # the last record: an unfinished write, cut
                found = scan_live(bytes(damaged), path, first, prev, 1 << 20)
                assert found.cut == start and found.segment.last_seq == first + k - 1
            found = scan_live(bytes(damaged), path, first, prev, 1 << 20, cut_damage=True)
            assert found.cut == start, f"byte {offset} (seed {SEED})"


def test_a_torn_write_with_a_later_sector_written_is_still_cut(tmp_path):
    """A crash may leave a later sector of the last write on disk and an
    earlier one not (zeros): the records after the gap were never
    acknowledged, so recovery cuts there as for any unfinished write."""
    records = write_journal(tmp_path / "j", segment_bytes=1 << 30)
    (live,) = seg_paths(tmp_path / "j")
    clean = live.read_bytes()
    spans = record_spans(clean)
    sector = (spans[len(spans) // 2][0] // 512 + 1) * 512
    damaged = bytearray(clean)
    damaged[sector:sector + 512] = bytes(512)
    live.write_bytes(bytes(damaged))
    journal = Journal.open(tmp_path / "j")
    got = list(journal.read())
    journal.close()
    kept = sum(1 for start, end in spans if end <= sector)
    assert got == records[:kept] and 0 < kept < len(records)
    assert list(live.parent.glob("*.cut"))


def torn_last_commit(path: Path, landed: set[int]) -> tuple[bytes, list[Record], int]:
    """Commit 40 records, then tear a last commit of 12 more as a crash
    during its fdatasync may: of the sectors it wrote, only those numbered
    in ``landed`` (counted from the one holding its start, 0) reach the file,
    the others keep their old bytes (the valid prefix's end, then
    preallocated zeros). Return the file's bytes, the records kept and where
    the last commit starts."""
    journal = Journal.open(path, preallocate=1 << 16)
    journal.reserve()
    for i in range(40):
        journal.append(i, fmt.KIND_ENTRY, b"acknowledged %d " % i + b"a" * 27)
    journal.commit()
    journal.reserve()
    (live,) = seg_paths(path)
    durable, start = live.read_bytes(), journal.segments()[-1].size
    assert start % 512 >= 64, "the last commit starts after the first bytes of a sector"
    for i in range(12):
        journal.append(100 + i, fmt.KIND_ENTRY, b"unacknowledged %d " % i + b"u" * 70)
    journal.commit()
    written = live.read_bytes()
    journal._release()                     # the crash: no close
    first = start // 512
    torn = bytearray(durable)
    for n in landed:
        at = (first + n) * 512
        torn[at:at + 512] = written[at:at + 512]
    assert written[start:].rstrip(b"\0") != bytes(torn[start:]).rstrip(b"\0")
    live.write_bytes(bytes(torn))
    kept = list(Journal.open_readonly(path).read())[:40]
    return bytes(torn), kept, start


@pytest.mark.parametrize("landed", [{1}, {1, 2}, {1, 3}])
def test_a_last_commit_torn_in_its_first_sector_is_cut(tmp_path, landed):
    """The sector holding the start of the last commit never reached the disk
    (zeros from there to its end) while later ones did: the records in those
    were never acknowledged (one fdatasync covered them all): cut, as for
    any unfinished write."""
    torn, kept, start = torn_last_commit(tmp_path / "j", landed)
    journal = Journal.open(tmp_path / "j")
    assert list(journal.read()) == kept and journal.last_seq == 40
    cut = journal.cut
    journal.close()
    assert cut is not None and cut.offset == start and cut.records >= 1
    assert cut.aside.read_bytes().rstrip(b"\0") == torn[start:].rstrip(b"\0")


def test_damage_after_a_torn_looking_first_sector_is_still_refused(tmp_path):
    """Zeros to a sector's end from a record's start, then good records with
    a flipped byte among them: the break at the flip shows no unwritten
    sector, so this is damage to written records, not one torn write."""
    torn, kept, start = torn_last_commit(tmp_path / "j", {1, 2, 3})
    (live,) = seg_paths(tmp_path / "j")
    later = (start // 512 + 2) * 512 + 100              # inside a record of the third sector
    assert later < len(torn[:later + 1].rstrip(b"\0"))
    damaged = bytearray(torn)
    damaged[later] ^= 0x01
    live.write_bytes(bytes(damaged))
    with pytest.raises(JournalCorrupt, match="record 41 .*good records follow it"):
        Journal.open(tmp_path / "j")
    assert live.read_bytes() == bytes(damaged) and not list(live.parent.glob("*.cut"))


def test_a_record_start_zeroed_to_a_sector_end_by_less_than_its_crc_is_refused(tmp_path):
    """Fewer zero bytes than a CRC field before the boundary are what one
    corrupted byte could leave: not taken for an unwritten sector."""
    records = write_journal(tmp_path / "j", segment_bytes=1 << 30)
    (live,) = seg_paths(tmp_path / "j")
    clean = live.read_bytes()
    spans = record_spans(clean)
    short = [(start, end) for start, end in spans[:-3] if 0 < -start % 512 < fmt.U32.size]
    long = [(start, end) for start, end in spans[:-3]
            if fmt.U32.size <= -start % 512 and end > (start // 512 + 1) * 512]
    assert short and long
    for (start, _), refused in ((short[0], True), (long[0], False)):
        damaged = bytearray(clean)
        damaged[start:(start // 512 + 1) * 512] = bytes(-start % 512)
        if refused:
            with pytest.raises(JournalCorrupt, match="good records follow it"):
                scan_live(bytes(damaged), live, 1, fmt.GENESIS, 1 << 20)
        else:
            found = scan_live(bytes(damaged), live, 1, fmt.GENESIS, 1 << 20)
            assert found.cut == start and found.segment.last_seq < records[-1].seq


def test_a_zeroed_sector_is_never_cut_below_what_is_known_durable(tmp_path):
    """A zeroed sector mid-segment looks like a torn last write; but records
    up to ``durable_upto`` (a snapshot's seq) were durable: refuse, change
    nothing. Below the records known durable the cut goes on, and says
    what it moved: its offset, bytes and the good records among them."""
    records = write_journal(tmp_path / "j", segment_bytes=1 << 30)
    (live,) = seg_paths(tmp_path / "j")
    spans = record_spans(live.read_bytes())
    sector = (spans[len(spans) // 2][0] // 512 + 1) * 512
    damaged = bytearray(live.read_bytes())
    damaged[sector:sector + 512] = bytes(512)
    live.write_bytes(bytes(damaged))
    kept = sum(1 for start, end in spans if end <= sector)
    first_live = records[-1].seq - len(spans) + 1
    for upto in (records[-1].seq, first_live + kept):
        with pytest.raises(JournalCorrupt, match=f"ending it at seq {first_live + kept - 1}, "
                                                 f"but seq {upto} is known durable"):
            Journal.open(tmp_path / "j", durable_upto=upto)
        assert live.read_bytes() == bytes(damaged) and not list(live.parent.glob("*.cut"))
    journal = Journal.open(tmp_path / "j", durable_upto=first_live + kept - 1)
    cut = journal.cut
    assert journal.last_seq == first_live + kept - 1 and list(journal.read()) == records[:journal.last_seq]
    journal.close()
    assert cut is not None and cut.segment == live.name and cut.last_seq == first_live + kept - 1
    assert cut.offset == spans[kept][0] and cut.aside.read_bytes().rstrip(b"\0") == \
        bytes(damaged[cut.offset:]).rstrip(b"\0")
    assert cut.bytes == len(bytes(damaged[cut.offset:]).rstrip(b"\0"))
    whole_after = sum(1 for start, end in spans if start >= sector + 512)
    assert whole_after <= cut.records <= len(spans) - kept     # the good ones it dropped
    journal = Journal.open(tmp_path / "j")
    assert journal.cut is None                                 # nothing more to cut
    journal.close()


def test_a_journal_ending_before_what_is_known_durable_is_refused(tmp_path):
    records = write_journal(tmp_path / "j", segment_bytes=4096)
    with pytest.raises(JournalCorrupt, match=f"ends at seq {records[-1].seq}, but seq "
                                             f"{records[-1].seq + 1} is known durable"):
        Journal.open(tmp_path / "j", durable_upto=records[-1].seq + 1)
    with pytest.raises(JournalCorrupt, match="ends at seq 0, but seq 5 is known durable"):
        Journal.open(tmp_path / "new", durable_upto=5)
    journal = Journal.open(tmp_path / "j", durable_upto=records[-1].seq + 1, cut_damage=True)
    assert journal.last_seq == records[-1].seq                 # a repair decides on purpose
    journal.close()


def test_a_damaged_journal_is_left_as_it_is_until_repaired_on_purpose(tmp_path, capsys):
    from gateway.cli import main
    records = write_journal(tmp_path / "j", segment_bytes=1 << 30)
    (live,) = seg_paths(tmp_path / "j")
    damaged = bytearray(live.read_bytes())
    start, end = record_spans(bytes(damaged))[10]
    damaged[start + 40] ^= 0x01
    live.write_bytes(bytes(damaged))
    with pytest.raises(JournalCorrupt, match="record 11 .*good records follow it"):
        Journal.open(tmp_path / "j")
    assert live.read_bytes() == bytes(damaged) and not list(live.parent.glob("*.cut"))
    # readers say so too, after the records before the damage
    got = []
    with pytest.raises(JournalCorrupt, match="record 11 .*good records follow it"):
        got.extend(Journal.open_readonly(tmp_path / "j").read())
    assert got == records[:10]
    assert main(["journal", "dump", str(tmp_path / "j")]) == 1
    printed = capsys.readouterr()
    assert "good records follow it" in printed.err and len(printed.out.splitlines()) == 10

    assert main(["journal", "repair", str(tmp_path / "j")]) == 0
    out = capsys.readouterr().out
    assert "damaged: segment" in out and "the journal now ends at seq 10" in out
    (aside,) = live.parent.glob("*.cut")
    assert aside.read_bytes() == bytes(damaged[start:])
    journal = Journal.open(tmp_path / "j")
    assert list(journal.read()) == records[:10]
    journal.close()
    assert main(["journal", "repair", str(tmp_path / "j")]) == 0
    assert "nothing to repair" in capsys.readouterr().out


def test_a_reader_that_saw_a_write_half_copied_reads_on_quietly(tmp_path):
    """A reader of a live journal may see the writer's last write half
    copied; if the record it stopped at is whole in the file by now, that
    was the writer at work, not damage."""
    write_journal(tmp_path / "j", segment_bytes=1 << 30)
    reader = Journal.open_readonly(tmp_path / "j")
    (seg,) = reader.segments()
    start, _ = record_spans(seg.path.read_bytes())[10]
    reader._damage_or_race(seg, start, 11, fmt.BAD_CHECKSUM)      # no error: it is good
