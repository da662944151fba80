"""The file journal: segments, footers, index, recovery and its refusals."""

from __future__ import annotations

import os

import pytest

from recorder import format as fmt
from recorder.journal import (Journal, JournalCorrupt, JournalLocked, read_journal, segment_name,
                              verify_journal)


def fill(journal: Journal, n: int, *, batch: int = 10, start_ts: int = 0) -> None:
    for i in range(n):
        journal.append(start_ts + i, 1, b"rec-%06d" % (journal.last_seq + 1) + b"." * (i % 30))
        if i % batch == batch - 1:
            journal.commit()
    journal.commit()


def seg_files(path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.endswith(".seg"))


def test_segments_roll_by_size_and_are_named_by_first_seq(tmp_path):
    journal = Journal.open(tmp_path / "j", segment_bytes=4096)
    fill(journal, 500)
    names = seg_files(tmp_path / "j")
    assert len(names) > 5
    firsts = [int(name[:20]) for name in names]
    assert firsts[0] == 1 and firsts == sorted(firsts)
    for seg in journal.segments()[:-1]:
        data = (tmp_path / "j" / seg.name).read_bytes()
        footer = fmt.decode_footer(data[-fmt.FOOTER_SIZE:])
        assert footer == fmt.Footer(seg.last_seq, seg.last_seq - seg.first_seq + 1, seg.chain)
        assert seg.name == segment_name(seg.first_seq)
    assert [r.seq for r in journal.read()] == list(range(1, 501))
    journal.close()
    assert verify_journal(tmp_path / "j").count == 500


def test_read_seeks_across_segments_by_seq_and_time(tmp_path):
    journal = Journal.open(tmp_path / "j", segment_bytes=1 << 16)
    fill(journal, 5000, batch=100, start_ts=1_000)
    for seq in (1, 2, 127, 128, 129, 1023, 1024, 1025, 2049, 4999, 5000):
        assert next(iter(journal.read(seq))).seq == seq
    for ts in (1_000, 1_001, 3_500, 5_999):
        assert next(iter(journal.read(from_ts=ts))).ts == ts
    journal.close()
    view = Journal.open_readonly(tmp_path / "j")
    assert [r.seq for r in view.read(4990)] == list(range(4990, 5001))
    assert next(iter(view.read(from_ts=4_321))).seq == 3322


def test_index_is_rebuilt_when_missing_or_wrong(tmp_path):
    journal = Journal.open(tmp_path / "j", segment_bytes=1 << 15)
    fill(journal, 3000, batch=50)
    journal.close()
    index_files = sorted(p for p in (tmp_path / "j").iterdir() if p.suffix == ".idx")
    assert index_files
    index_files[0].unlink()
    # a well-formed index that lies about offsets: the log must win
    seg = Journal.open_readonly(tmp_path / "j").segments()[1]
    lie = fmt.SegmentIndex([(seg.first_seq + 1, fmt.HEADER_SIZE + 7, 0)], 1 << 40, seg.size)
    index_files[1].write_bytes(fmt.encode_index(seg.first_seq, seg.last_seq, lie))
    index_files[2].write_bytes(b"garbage")
    expected = list(range(1, 3001))
    assert [r.seq for r in read_journal(tmp_path / "j")] == expected
    assert [r.seq for r in read_journal(tmp_path / "j", seg.first_seq + 3)][0] == seg.first_seq + 3
    journal = Journal.open(tmp_path / "j", segment_bytes=1 << 15)
    assert [r.seq for r in journal.read()] == expected
    assert next(iter(journal.read(seg.first_seq + 1))).seq == seg.first_seq + 1
    journal.close()
    assert index_files[0].exists()          # written anew from the log


def test_recovery_cuts_an_unfinished_record_and_keeps_it_aside(tmp_path):
    journal = Journal.open(tmp_path / "j")
    fill(journal, 100)
    head = journal.head_hash
    journal.close()
    live = tmp_path / "j" / seg_files(tmp_path / "j")[-1]
    good_size = live.stat().st_size
    record, _ = fmt.encode_record(101, 5, 1, b"unfinished", bytes(32))
    with open(live, "ab") as f:
        f.write(record[:-9])
    journal = Journal.open(tmp_path / "j")
    assert journal.last_seq == 100 and journal.head_hash == head
    assert live.stat().st_size == good_size
    aside = tmp_path / "j" / f"{live.name}.{good_size}.cut"
    assert aside.read_bytes() == record[:-9]
    assert journal.append(7, 1, b"next") == 101
    journal.commit()
    journal.close()
    assert verify_journal(tmp_path / "j").count == 101


def test_a_second_cut_at_the_same_offset_keeps_the_first_aside(tmp_path):
    """The first commit after a restart torn again starts where the first
    torn one did: its bytes go to a numbered file, the first cut's stay."""
    journal = Journal.open(tmp_path / "j")
    fill(journal, 10)
    chain = journal.segments()[-1].chain
    journal.close()
    live = tmp_path / "j" / seg_files(tmp_path / "j")[-1]
    good_size = live.stat().st_size
    asides = []
    for payload in (b"first crash's order", b"second crash's order"):
        record, _ = fmt.encode_record(11, 5, 1, payload, chain)
        with open(live, "ab") as f:
            f.write(record[:-9])
        journal = Journal.open(tmp_path / "j")
        assert journal.last_seq == 10 and journal.cut is not None
        asides.append((journal.cut.aside, record[:-9]))
        journal.close()
    assert [path.name for path, _ in asides] == [f"{live.name}.{good_size}.cut",
                                                 f"{live.name}.{good_size}.2.cut"]
    for path, torn in asides:
        assert path.read_bytes() == torn


@pytest.mark.parametrize("failing", ["_write_all", "fsync_dir"])
def test_a_cut_that_cannot_be_kept_aside_cuts_nothing(tmp_path, monkeypatch, failing):
    """A full disk at a restart: the bytes to cut cannot be written whole to
    their .cut file, or its name made durable. The error names the file,
    the partial .cut file is removed and the segment left as it was; with
    room again the next open cuts as usual."""
    import errno

    from recorder import journal as journal_module

    journal = Journal.open(tmp_path / "j")
    fill(journal, 10)
    chain = journal.segments()[-1].chain
    journal.close()
    live = tmp_path / "j" / seg_files(tmp_path / "j")[-1]
    good_size = live.stat().st_size
    record, _ = fmt.encode_record(11, 5, 1, b"torn at the crash" * 40, chain)
    with open(live, "ab") as f:
        f.write(record[:-9])
    torn = live.read_bytes()
    real = getattr(journal_module, failing)

    def disk_full(*args):
        if failing == "_write_all":
            fd, data, offset = args
            os.pwrite(fd, data[:len(data) // 2], offset)    # what fitted
        else:
            real(*args)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(journal_module, failing, disk_full)
    aside = tmp_path / "j" / f"{live.name}.{good_size}.cut"
    with pytest.raises(OSError) as failed:
        Journal.open(tmp_path / "j")
    assert failed.value.errno == errno.ENOSPC
    assert failed.value.filename == str(aside if failing == "_write_all" else tmp_path / "j")
    assert live.read_bytes() == torn and not list(live.parent.glob("*.cut"))
    monkeypatch.setattr(journal_module, failing, real)
    journal = Journal.open(tmp_path / "j")
    assert journal.last_seq == 10 and journal.cut.aside == aside
    journal.close()
    assert aside.read_bytes() == record[:-9] and live.stat().st_size == good_size


def test_read_only_view_never_truncates(tmp_path):
    journal = Journal.open(tmp_path / "j")
    fill(journal, 20)
    journal.close()
    live = tmp_path / "j" / seg_files(tmp_path / "j")[-1]
    with open(live, "ab") as f:
        f.write(b"\x01torn")
    size = live.stat().st_size
    assert [r.seq for r in read_journal(tmp_path / "j")] == list(range(1, 21))
    assert Journal.open_readonly(tmp_path / "j").last_seq == 20
    assert live.stat().st_size == size
    with pytest.raises(JournalCorrupt, match="record 21"):
        verify_journal(tmp_path / "j")


def test_crash_after_footer_before_the_next_segment(tmp_path):
    journal = Journal.open(tmp_path / "j", segment_bytes=2048)
    fill(journal, 100)
    journal.close()
    names = seg_files(tmp_path / "j")
    (tmp_path / "j" / names[-1]).unlink()        # the new live segment never got made
    journal = Journal.open(tmp_path / "j", segment_bytes=2048)
    assert journal.last_seq == int(names[-1][:20]) - 1
    assert seg_files(tmp_path / "j") == names
    fill(journal, 10)
    journal.close()
    assert verify_journal(tmp_path / "j").count == journal.last_seq


@pytest.mark.parametrize("keep", [0, 1, 40, 63, 64])
def test_torn_header_of_a_new_segment_is_rewritten(tmp_path, keep):
    journal = Journal.open(tmp_path / "j", segment_bytes=2048)
    fill(journal, 50)
    while journal.segments()[-1].last_seq >= journal.segments()[-1].first_seq:
        fill(journal, 1)                          # until a roll leaves an empty live segment
    last = journal.last_seq
    journal.close()
    live = tmp_path / "j" / seg_files(tmp_path / "j")[-1]
    data = live.read_bytes()
    assert len(data) == fmt.HEADER_SIZE
    live.write_bytes(data[:keep] if keep < 64 else bytes(64))
    assert Journal.open_readonly(tmp_path / "j").last_seq == last
    journal = Journal.open(tmp_path / "j", segment_bytes=2048)
    assert journal.last_seq == last
    assert live.read_bytes() == data
    journal.close()


def test_damage_in_a_closed_segment_names_segment_and_record(tmp_path):
    journal = Journal.open(tmp_path / "j", segment_bytes=4096)
    fill(journal, 300)
    journal.close()
    seg = Journal.open_readonly(tmp_path / "j").segments()[2]
    path = tmp_path / "j" / seg.name
    data = bytearray(path.read_bytes())
    # payload byte of the third record of that segment
    pos = fmt.HEADER_SIZE
    for _ in range(2):
        pos += fmt.RECORD_OVERHEAD + fmt.RECORD_HEAD.unpack_from(data, pos)[1]
    data[pos + 40] ^= 0x10
    path.write_bytes(bytes(data))
    journal = Journal.open(tmp_path / "j", segment_bytes=4096)   # open checks headers and footers only
    with pytest.raises(JournalCorrupt) as bad:
        list(journal.read())
    assert bad.value.segment == seg.name and bad.value.what == f"record {seg.first_seq + 2}"
    assert "bad checksum" in str(bad.value)
    with pytest.raises(JournalCorrupt, match=f"{seg.name}: record {seg.first_seq + 2}"):
        verify_journal(tmp_path / "j")
    journal.close()


def test_damaged_footer_or_broken_links_refuse_to_open(tmp_path):
    journal = Journal.open(tmp_path / "j", segment_bytes=4096)
    fill(journal, 300)
    journal.close()
    names = seg_files(tmp_path / "j")
    first = tmp_path / "j" / names[0]
    data = bytearray(first.read_bytes())
    data[-10] ^= 1
    first.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match=f"segment {names[0]}: footer"):
        Journal.open(tmp_path / "j")
    data[-10] ^= 1
    first.write_bytes(bytes(data))
    (tmp_path / "j" / names[1]).unlink()
    with pytest.raises(JournalCorrupt, match="expected"):
        Journal.open(tmp_path / "j")


def test_one_writer_at_a_time(tmp_path):
    journal = Journal.open(tmp_path / "j")
    with pytest.raises(JournalLocked):
        Journal.open(tmp_path / "j")
    assert Journal.open_readonly(tmp_path / "j").last_seq == 0
    journal.close()
    Journal.open(tmp_path / "j").close()


def test_max_record_is_enforced_on_read(tmp_path):
    journal = Journal.open(tmp_path / "j", max_record=64)
    journal.append(1, 1, b"a" * 64)
    journal.commit()
    journal.close()
    live = tmp_path / "j" / seg_files(tmp_path / "j")[-1]
    record, _ = fmt.encode_record(2, 2, 1, b"b" * 65, bytes.fromhex(Journal.open_readonly(tmp_path / "j").head_hash))
    with open(live, "ab") as f:
        f.write(record)
    with pytest.raises(JournalCorrupt, match="record 2.*bad length"):
        verify_journal(tmp_path / "j")
    assert Journal.open(tmp_path / "j", max_record=64).last_seq == 1


def test_a_new_max_record_starts_a_new_segment(tmp_path):
    journal = Journal.open(tmp_path / "j", max_record=100)
    fill(journal, 5)
    journal.close()
    journal = Journal.open(tmp_path / "j", max_record=5000)
    journal.append(9, 1, b"z" * 4000)
    journal.commit()
    journal.close()
    assert len(seg_files(tmp_path / "j")) == 2
    assert verify_journal(tmp_path / "j").count == 6
    assert [len(r.payload) for r in read_journal(tmp_path / "j")][-1] == 4000


def test_verify_reports_count_and_head(tmp_path):
    journal = Journal.open(tmp_path / "j", segment_bytes=4096)
    fill(journal, 250)
    head = journal.head_hash
    journal.close()
    report = verify_journal(tmp_path / "j")
    assert (report.count, report.last_seq, report.head_hash) == (250, 250, head)
    assert report.segments == len(seg_files(tmp_path / "j"))


@pytest.mark.parametrize("mode", ["group", "every", "none"])
def test_modes_write_the_same_bytes(tmp_path, mode):
    journal = Journal.open(tmp_path / mode, durability=mode)
    fill(journal, 200, batch=7)
    journal.close()
    reference = Journal.open(tmp_path / "ref")
    fill(reference, 200, batch=7)
    reference.close()
    for name in seg_files(tmp_path / "ref"):
        assert (tmp_path / mode / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()


def test_a_read_follows_the_writer_across_rolls(tmp_path):
    journal = Journal.open(tmp_path / "j", segment_bytes=2048)
    fill(journal, 50)
    reader = journal.read()
    assert [next(reader).seq for _ in range(10)] == list(range(1, 11))
    fill(journal, 200)                      # several rolls while the reader waits
    assert [r.seq for r in reader] == list(range(11, 251))
    assert [r.seq for r in journal.read(249)] == [249, 250]
    journal.close()


def test_a_read_in_the_live_segment_sees_later_commits_before_a_roll(tmp_path):
    journal = Journal.open(tmp_path / "j", segment_bytes=1 << 20)
    fill(journal, 30)
    reader = journal.read()
    assert [next(reader).seq for _ in range(30)] == list(range(1, 31))
    fill(journal, 5)                            # same live segment, no roll
    assert [next(reader).seq for _ in range(5)] == list(range(31, 36))
    journal.close()
    small = Journal.open(tmp_path / "k", segment_bytes=4096)
    fill(small, 10)
    reader = small.read()
    assert next(reader).seq == 1                # reading the live segment ...
    fill(small, 200)                            # ... which grows, then rolls, several times
    assert [r.seq for r in reader] == list(range(2, 211))
    small.close()


# ------------------------------------------------------------------ preallocation

def reserve_all(journal: Journal) -> list[int]:
    """Call `Journal.reserve` until it has nothing to do; return what each call wrote."""
    steps = []
    while written := journal.reserve():
        steps.append(written)
    return steps


def test_reserve_keeps_zeros_ahead_and_commits_overwrite_them(tmp_path):
    journal = Journal.open(tmp_path / "j", preallocate=64 << 10)
    live = tmp_path / "j" / seg_files(tmp_path / "j")[-1]
    assert reserve_all(journal) == [16 << 10] * 4        # a quarter per call at most
    assert live.stat().st_size == fmt.HEADER_SIZE + (64 << 10)
    assert journal.reserve() == 0                       # enough is there
    fill(journal, 50)
    assert live.stat().st_size == fmt.HEADER_SIZE + (64 << 10)   # written in place
    size = journal.segments()[-1].size
    assert size < fmt.HEADER_SIZE + (32 << 10)
    assert journal.reserve() == 0                       # less than an eighth written over
    assert [r.seq for r in journal.read()] == list(range(1, 51))
    view = Journal.open_readonly(tmp_path / "j")          # stops quietly at the zeros
    assert view.last_seq == 50 and [r.seq for r in view.read(45)] == [45, 46, 47, 48, 49, 50]
    assert verify_journal(tmp_path / "j").count == 50    # a zero tail is free space
    fill(journal, 350)                                    # past an eighth: the next reserve tops up
    size = journal.segments()[-1].size
    allocated = live.stat().st_size
    assert allocated - size < 56 << 10 and allocated == fmt.HEADER_SIZE + (64 << 10)
    steps = reserve_all(journal)                          # to within an eighth, a quarter a call
    assert steps and max(steps) <= 16 << 10
    assert size + (56 << 10) < live.stat().st_size <= size + (64 << 10)
    fill(journal, 2000)                                   # past the zeros: the file grows
    size = journal.segments()[-1].size
    assert live.stat().st_size == size
    assert reserve_all(journal) == [16 << 10] * 4
    journal.close()
    assert live.stat().st_size == size                   # a clean close drops the zeros


def test_reopening_cuts_a_zero_tail_without_keeping_it_aside(tmp_path):
    journal = Journal.open(tmp_path / "j", preallocate=8192)
    reserve_all(journal)
    fill(journal, 20)
    head = journal.head_hash
    journal._release()                                    # killed: the zeros stay
    live = tmp_path / "j" / seg_files(tmp_path / "j")[-1]
    assert live.stat().st_size == fmt.HEADER_SIZE + 8192
    journal = Journal.open(tmp_path / "j", preallocate=8192)
    assert journal.last_seq == 20 and journal.head_hash == head
    assert live.stat().st_size == journal.segments()[-1].size
    assert not [name for name in os.listdir(tmp_path / "j") if name.endswith(".cut")]
    reserve_all(journal)
    assert journal.append(9, 1, b"next") == 21
    journal.commit()
    journal.close()
    assert [r.seq for r in read_journal(tmp_path / "j")] == list(range(1, 22))


def test_a_torn_record_in_preallocated_space_is_cut_aside_with_the_zeros(tmp_path):
    journal = Journal.open(tmp_path / "j", preallocate=4096)
    reserve_all(journal)
    fill(journal, 10)
    size = journal.segments()[-1].size
    journal._release()
    live = tmp_path / "j" / seg_files(tmp_path / "j")[-1]
    record, _ = fmt.encode_record(11, 5, 1, b"torn", bytes(32))
    with open(live, "r+b") as f:                          # half a record over the zeros
        f.seek(size)
        f.write(record[:20])
    with pytest.raises(JournalCorrupt, match="record 11"):
        verify_journal(tmp_path / "j")
    journal = Journal.open(tmp_path / "j")
    assert journal.last_seq == 10
    aside = (tmp_path / "j" / f"{live.name}.{size}.cut").read_bytes()
    assert aside[:20] == record[:20] and not aside[20:].strip(b"\0")
    journal.close()


def test_a_roll_drops_the_zeros_so_the_footer_ends_the_segment(tmp_path):
    journal = Journal.open(tmp_path / "j", segment_bytes=8192, preallocate=4096)
    for _ in range(30):
        fill(journal, 20)
        journal.reserve()
    segments = journal.segments()
    assert len(segments) > 3
    for seg in segments[:-1]:
        data = (tmp_path / "j" / seg.name).read_bytes()
        assert len(data) == seg.size               # never reserved past the size limit
        footer = fmt.decode_footer(data[-fmt.FOOTER_SIZE:])
        assert footer == fmt.Footer(seg.last_seq, seg.last_seq - seg.first_seq + 1, seg.chain)
    journal.close()
    assert verify_journal(tmp_path / "j").count == 600
    assert [r.seq for r in read_journal(tmp_path / "j")] == list(range(1, 601))


def test_reserve_is_off_without_preallocate_or_syncs_and_refuses_a_negative_size(tmp_path):
    journal = Journal.open(tmp_path / "j")
    assert journal.reserve() == 0
    journal.close()
    journal = Journal.open(tmp_path / "n", durability="none", preallocate=4096)
    assert journal.reserve() == 0
    journal.close()
    with pytest.raises(ValueError, match="preallocate"):
        Journal.open(tmp_path / "k", preallocate=-1)
