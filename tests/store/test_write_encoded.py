"""DatasetWriter.write_encoded: records encoded elsewhere (a Dask worker) give the same containers,
byte for byte, as write_batch of the same batches, wherever the size limits cut them."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.des import DesReader, DesWriter
from connector.store import Store
from connector.store.errors import StoreError
from connector.store.writer import EncodedRecords, encode_records

_rows = st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.none() | st.text(max_size=12),
                           st.none() | st.floats(allow_nan=False, allow_infinity=False)), max_size=15)


def _batch(rows: list[tuple], file: str) -> pa.RecordBatch:
    ids, texts, scores = zip(*rows) if rows else ((), (), ())
    return pa.RecordBatch.from_arrays(
        [pa.array(ids, pa.int64()), pa.array(texts, pa.string()), pa.array(scores, pa.float64()),
         pa.array([file] * len(rows), pa.string())], names=["id", "text", "score", "_file"])


def _ship(records: EncodedRecords, out_of_band: bool) -> EncodedRecords:
    """Through pickle as Dask ships a worker's result (protocol 5, buffers out of band), or in band."""
    if not out_of_band:
        return pickle.loads(pickle.dumps(records, protocol=4))
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(records, protocol=5, buffer_callback=buffers.append)
    return pickle.loads(stream, buffers=buffers)


def _containers(store: Store, dataset: str) -> list[tuple[int, int, int, str]]:
    return [(d.first, d.last, d.size, d.sha256) for d in store.dataranges(dataset)]


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(_rows, min_size=1, max_size=4), max_datapoints=st.sampled_from([1, 4, 1000]),
       max_bytes=st.sampled_from([40, 200, 1 << 20]), skip=st.integers(0, 5), out_of_band=st.booleans())
def test_encoded_batches_make_the_containers_write_batch_makes(tmp_path_factory, batches, max_datapoints,
                                                               max_bytes, skip, out_of_band):
    root = tmp_path_factory.mktemp("enc")
    with Store(str(root / "store"), max_datapoints=max_datapoints, max_bytes=max_bytes) as store:
        store.ensure_dataset("arrow")
        store.ensure_dataset("encoded")
        with store.writer("arrow", "records") as w:
            for n, rows in enumerate(batches):
                batch = _batch(rows, f"f{n}")
                w.write_batch(batch.slice(min(skip, batch.num_rows)) if n == 0 else batch, ["_file"])
        with store.writer("encoded", "records") as w:
            for n, rows in enumerate(batches):
                # pickled as Dask ships a worker's result; the first one resumed past ``skip`` rows
                encoded = _ship(encode_records(_batch(rows, f"f{n}"), ["_file"]), out_of_band)
                if n == 0:
                    encoded = encoded.slice(min(skip, encoded.num_rows))
                if encoded.num_rows:
                    w.write_encoded(encoded)
        assert _containers(store, "encoded") == _containers(store, "arrow")
        assert b"".join(store.read_lines("encoded")) == b"".join(store.read_lines("arrow"))


def test_encoded_records_with_two_columns_of_one_name_are_refused(tmp_path):
    batch = pa.RecordBatch.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    with Store(str(tmp_path / "store")) as store:
        store.ensure_dataset("d")
        with store.writer("d", "records") as w, pytest.raises(StoreError, match="two columns .* named 'a'"):
            w.write_encoded(encode_records(batch))


def test_add_many_refuses_crcs_that_do_not_match_the_members_in_number(tmp_path):
    with DesWriter(str(tmp_path / "c.des")) as w:
        with pytest.raises(ValueError, match="one CRC per member"):
            w.add_many(["a", "b"], b"xy", [1, 1], crcs=np.zeros(1, np.int64))
        # Nothing of the refused call was kept: the same members go in, and the container reads back.
        w.add_many(["a", "b"], b"xy", [1, 1])
    with DesReader(str(tmp_path / "c.des")) as r:
        assert [r.read(n) for n in r.names()] == [b"x", b"y"]


def test_pickle_protocol_5_ships_the_record_bytes_out_of_band():
    """Dask pickles a worker's result with protocol 5 and a buffer callback: the record bytes must
    go as a buffer of their own, not copied into the pickle stream (which distributed would then
    scan whole), and come back as the same bytes."""
    rows = [(n, f"text {n}" * 20, n / 4) for n in range(2000)]
    records = encode_records(_batch(rows, "f"), ["_file"])
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(records, protocol=5, buffer_callback=buffers.append)
    assert len(stream) < 2000 < len(records.data)
    assert sum(b.raw().nbytes for b in buffers) == len(records.data) + records.lengths.nbytes + records.crcs.nbytes
    back = pickle.loads(stream, buffers=buffers)
    assert bytes(back.data) == records.data and back.schema == records.schema
    assert (back.lengths == records.lengths).all() and (back.crcs == records.crcs).all()
    resumed = back.slice(7)  # a slice of the received buffer, as a resumed file's first batch is
    assert bytes(resumed.data) == records.data[int(records.lengths[:7].sum()):]
