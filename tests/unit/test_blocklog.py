"""The embedded chain's block log (``marketplace/chain/blocklog.py``): records survive a reopen, a
write cut anywhere in the last record is dropped cleanly, damage before the end is refused with
its offset, and one process at a time holds the log."""

from __future__ import annotations

import pytest

from marketplace.chain.blocklog import HEADER_BYTES, MAGIC, BlockLog, RecordKind, encode_record, scan
from marketplace.errors import ChainError, ChainLogCorrupt
from tests.faults import file_size_limit

GENESIS = (RecordKind.GENESIS, b'{"format": 1}')
BLOCKS = [(RecordKind.BLOCK, bytes([n]) * (50 + n)) for n in range(1, 6)]


def _write(path, records):
    block_log = BlockLog.create(path, [GENESIS])
    block_log.append(records)
    block_log.close()


def _read(path):
    block_log, records = BlockLog.open(path)
    block_log.close()
    return [(r.kind, r.payload) for r in records]


def test_records_come_back_in_order_after_a_reopen(tmp_path):
    path = tmp_path / "blocks.log"
    _write(path, BLOCKS[:2])
    block_log, _ = BlockLog.open(path)
    block_log.append(BLOCKS[2:])
    block_log.close()
    assert _read(path) == [GENESIS, *BLOCKS]
    assert not (tmp_path / "blocks.log.tmp").exists()


@pytest.mark.parametrize("kept", range(HEADER_BYTES + 55))  # bytes of the last record that reached the disk
def test_a_write_cut_anywhere_in_the_last_record_is_dropped(tmp_path, kept):
    path = tmp_path / "blocks.log"
    _write(path, BLOCKS)
    whole = path.read_bytes()
    last = len(encode_record(*BLOCKS[-1]))
    assert last == HEADER_BYTES + 55
    path.write_bytes(whole[: len(whole) - last + kept])
    assert _read(path) == [GENESIS, *BLOCKS[:-1]]
    assert path.stat().st_size == len(whole) - last  # truncated to the last whole record
    block_log, _ = BlockLog.open(path)  # and appending continues after it
    block_log.append([BLOCKS[-1]])
    block_log.close()
    assert _read(path) == [GENESIS, *BLOCKS]


def test_a_last_record_that_fails_its_checksum_was_never_acknowledged(tmp_path):
    path = tmp_path / "blocks.log"
    _write(path, BLOCKS)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the last payload
    path.write_bytes(bytes(data))
    assert _read(path) == [GENESIS, *BLOCKS[:-1]]


def test_a_zero_filled_tail_is_dropped(tmp_path):
    path = tmp_path / "blocks.log"
    _write(path, BLOCKS)
    path.write_bytes(path.read_bytes() + b"\x00" * 4096)  # a power loss after the file grew
    assert _read(path) == [GENESIS, *BLOCKS]


def test_a_damaged_payload_before_the_end_is_refused_with_its_offset(tmp_path):
    path = tmp_path / "blocks.log"
    _write(path, BLOCKS)
    found = scan(path.read_bytes())
    second = found.records[2]
    data = bytearray(path.read_bytes())
    data[second.offset + HEADER_BYTES + 3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChainLogCorrupt) as info:
        BlockLog.open(path)
    assert info.value.offset == second.offset and info.value.record == 2
    assert f"record 2 at byte {second.offset}" in str(info.value) and "backup" in str(info.value)
    assert path.read_bytes() == bytes(data)  # nothing truncated: a refusal changes nothing


def test_a_damaged_header_before_the_end_is_refused(tmp_path):
    path = tmp_path / "blocks.log"
    _write(path, BLOCKS)
    third = scan(path.read_bytes()).records[3]
    data = bytearray(path.read_bytes())
    data[third.offset + 2] ^= 0x40  # the length field
    path.write_bytes(bytes(data))
    with pytest.raises(ChainLogCorrupt, match="damaged header") as info:
        BlockLog.open(path)
    assert info.value.record == 3


def test_a_file_that_is_not_a_log_is_refused(tmp_path):
    path = tmp_path / "blocks.log"
    path.write_bytes(b'{"not": "a chain log"}')
    with pytest.raises(ChainLogCorrupt, match="bad magic"):
        BlockLog.open(path)


def test_a_cut_magic_is_an_empty_log():
    assert scan(MAGIC[:3]).records == () and scan(MAGIC[:3]).torn_bytes == 3


def test_one_process_at_a_time(tmp_path):
    path = tmp_path / "blocks.log"
    first = BlockLog.create(path, [GENESIS])
    try:
        with pytest.raises(ChainError, match="in use by another process"):
            BlockLog.open(path)
    finally:
        first.close()
    BlockLog.open(path)[0].close()  # released on close


def test_rewrite_replaces_the_log_whole(tmp_path):
    path = tmp_path / "blocks.log"
    block_log = BlockLog.create(path, [GENESIS])
    block_log.append(BLOCKS)
    block_log.rewrite([GENESIS, BLOCKS[0]])
    block_log.append([BLOCKS[4]])
    block_log.close()
    assert _read(path) == [GENESIS, BLOCKS[0], BLOCKS[4]]


def test_a_failed_append_raises_and_names_the_log(tmp_path):
    path = tmp_path / "blocks.log"
    block_log = BlockLog.create(path, [GENESIS])
    with file_size_limit(path.stat().st_size + 10):  # the disk is "full" 10 bytes on: EFBIG
        with pytest.raises(ChainError, match="cannot append to the chain log"):
            block_log.append(BLOCKS[:1])
    assert path.stat().st_size == block_log.size  # the partial write was taken back
    block_log.append(BLOCKS[:1])  # so the log goes on whole once there is room
    block_log.close()
    assert _read(path) == [GENESIS, BLOCKS[0]]
