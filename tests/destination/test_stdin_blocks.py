"""stdin in blocks: every line exactly once, in order, whatever the pipe hands over per read."""

from __future__ import annotations

import os
import threading

from connector.destination.messages import BLOCK_BYTES, blocks


def _read_all(fd: int) -> list[bytes]:
    with os.fdopen(fd, "rb", buffering=0) as stream:
        return [line for block in blocks(stream) if block is not None for line in block[1]]


def test_lines_of_a_closed_pipe_with_an_unfinished_last_line():
    r, w = os.pipe()
    os.write(w, b'{"a":1}\n{"b":2}\n{"c":3}')  # the last line has no newline
    os.close(w)
    assert _read_all(r) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_a_writer_in_small_pieces_gives_every_line_once_and_blocks_stay_bounded():
    lines = [b'{"n":%d,"pad":"%s"}' % (i, b"x" * (i % 97)) for i in range(60_000)]
    payload = b"\n".join(lines) + b"\n"
    r, w = os.pipe()

    def write() -> None:
        for start in range(0, len(payload), 4093):  # pieces that cut lines anywhere
            os.write(w, payload[start:start + 4093])
        os.close(w)

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[bytes] = []
    with os.fdopen(r, "rb", buffering=0) as stream:
        for block in blocks(stream):
            assert block is not None
            text, got = block
            assert text == b"\n".join(got) and len(text) <= BLOCK_BYTES + max(len(x) for x in got)
            seen.extend(got)
    writer.join()
    assert seen == lines
