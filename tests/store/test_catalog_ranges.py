"""The catalog's datarange lookups against a brute-force model: the overlap check of an insert and
``datarange_at`` walk one step down the (dataset, first) key instead of scanning, which is right only
because dataranges never overlap; hypothesis checks it over random layouts, gaps and edges included."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.store.catalog import Catalog
from connector.store.errors import RangeError

spans = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 8)), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attempts=spans, probes=st.lists(st.integers(0, 75), max_size=30))
def test_inserts_refuse_exactly_the_overlaps_and_lookups_find_the_holder(tmp_path_factory, attempts, probes):
    catalog = Catalog(str(tmp_path_factory.mktemp("cat") / "c.sqlite"))
    try:
        with catalog.transaction() as db:
            catalog.insert_dataset(db, "d")
            catalog.insert_dataset(db, "other")
            catalog.insert_datarange(db, "other", 0, 100, "o", 1, "0" * 64, 101, "records")  # another dataset
        held: list[tuple[int, int]] = []
        for first, width in attempts:
            last = first + width
            overlaps = sorted((a, b) for a, b in held if a <= last and b >= first)
            with catalog.transaction() as db:
                if overlaps:  # the message names the lowest one
                    with pytest.raises(RangeError, match=rf"\[{first}, {last}\] overlaps \[{overlaps[0][0]}, {overlaps[0][1]}\]"):
                        catalog.insert_datarange(db, "d", first, last, f"p{first}", 1, "0" * 64, width + 1, "records")
                else:
                    catalog.insert_datarange(db, "d", first, last, f"p{first}", 1, "0" * 64, width + 1, "records")
                    held.append((first, last))
        for key in probes:
            row = catalog.datarange_at("d", key)
            holder = [(a, b) for a, b in held if a <= key <= b]
            assert (None if row is None else (row["first"], row["last"])) == (holder[0] if holder else None)
    finally:
        catalog.close()
