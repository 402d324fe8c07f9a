"""Model-based test of the store: random sequences of operations (writes, aggregates, versions,
rotate, truncate, freeze, gc, restore, reopen without a catalog, moving the root, a writer racing
an aggregate) checked after every step against a plain model: a list of ids per dataset and per
version.

The default run stays small (seconds); ``-m slow`` runs a larger one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from connector.store import DatasetFrozen, Store

DATASETS = ("a", "b")


class StoreMachine(RuleBasedStateMachine):
    """The store against ``current`` (ids per dataset) and ``versions`` (ids per (dataset, version))."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="des-model-")
        self.root = os.path.join(self.tmp, "root-0")
        self.moves = 0
        self.store = Store(self.root, max_datapoints=4)
        self.current: dict[str, list[int]] = {}
        self.versions: dict[tuple[str, str], list[int]] = {}
        self.frozen: set[str] = set()
        self.next_id = 0
        self.next_version = 1

    @initialize()
    def create(self) -> None:
        for name in DATASETS:
            self.store.create_dataset(name)
            self.current[name] = []

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _ids(self, n: int) -> list[int]:
        out = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        return out

    def _reopen(self) -> None:
        self.store.close()
        self.store = Store(self.root, max_datapoints=4)

    # -- operations --------------------------------------------------------------------------------

    @rule(name=st.sampled_from(DATASETS), n=st.integers(0, 9), split=st.booleans())
    def write(self, name: str, n: int, split: bool) -> None:
        new = self._ids(n)
        batches = [new[: n // 2], new[n // 2:]] if split else [new]
        tables = [pa.table({"id": b}) for b in batches if b]
        if name in self.frozen:
            if tables:
                with pytest.raises(DatasetFrozen):
                    self.store.write_records(name, tables)
            return
        self.store.write_records(name, tables)
        self.current[name] += new

    @rule(name=st.sampled_from(DATASETS), data=st.data())
    def aggregate(self, name: str, data: st.DataObject) -> None:
        ranges = self.store.dataranges(name)
        if len(ranges) < 2:
            return
        i = data.draw(st.integers(0, len(ranges) - 2))
        j = data.draw(st.integers(i + 1, len(ranges) - 1))
        merged = self.store.aggregate(name, ranges[i].first, ranges[j].last)
        assert (merged.first, merged.last) == (ranges[i].first, ranges[j].last)

    @rule(name=st.sampled_from(DATASETS))
    def create_version(self, name: str) -> None:
        version = f"0.{self.next_version}.0"  # rotate takes the majors
        self.next_version += 1
        self.store.create_version(name, version)
        self.versions[(name, version)] = list(self.current[name])

    @precondition(lambda self: self.versions)
    @rule(data=st.data())
    def delete_version(self, data: st.DataObject) -> None:
        name, version = data.draw(st.sampled_from(sorted(self.versions)))
        self.store.delete_version(name, version)
        del self.versions[(name, version)]

    @rule(name=st.sampled_from(DATASETS))
    def rotate(self, name: str) -> None:
        if name in self.frozen:
            with pytest.raises(DatasetFrozen):
                self.store.rotate(name)
            return
        v = self.store.rotate(name)
        self.versions[(name, v.version)] = self.current[name]
        self.current[name] = []

    @rule(name=st.sampled_from(DATASETS))
    def truncate(self, name: str) -> None:
        if name in self.frozen:
            with pytest.raises(DatasetFrozen):
                self.store.truncate(name)
            return
        self.store.truncate(name)
        self.current[name] = []

    @rule(name=st.sampled_from(DATASETS), frozen=st.booleans())
    def freeze(self, name: str, frozen: bool) -> None:
        if frozen:
            self.store.freeze(name)
            self.frozen.add(name)
        else:
            self.store.unfreeze(name)
            self.frozen.discard(name)

    @rule(name=st.sampled_from(DATASETS))
    def gc(self, name: str) -> None:
        self.store.gc(name)

    @rule()
    def restore(self) -> None:
        self.store.restore()

    @rule()
    def reopen_without_catalog(self) -> None:
        self.store.close()
        for suffix in ("", "-wal", "-shm"):
            path = self.store.catalog_path + suffix
            if os.path.exists(path):
                os.unlink(path)
        self._reopen()

    @rule()
    def move_root(self) -> None:
        """``mv`` the whole root (catalog included) and open it at its new place."""
        self.store.close()
        self.moves += 1
        moved = os.path.join(self.tmp, f"root-{self.moves}")
        os.rename(self.root, moved)
        self.root = moved
        self._reopen()

    @rule(name=st.sampled_from(DATASETS), n=st.integers(1, 9))
    def write_while_aggregating(self, name: str, n: int) -> None:
        """A writer and an aggregate of the same dataset at once (one waits for the other's lock)."""
        if name in self.frozen:
            return
        ranges = self.store.dataranges(name)
        errors: list[BaseException] = []

        def merge() -> None:
            try:
                if len(ranges) >= 2:
                    self.store.aggregate(name, ranges[0].first, ranges[-1].last, wait=30)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
                errors.append(exc)

        worker = threading.Thread(target=merge)
        worker.start()
        new = self._ids(n)
        self.store.write_records(name, [pa.table({"id": new})])
        self.current[name] += new
        worker.join()
        assert not errors, errors

    # -- what must always hold ---------------------------------------------------------------------

    @invariant()
    def matches_the_model(self) -> None:
        if not self.current:
            return
        for name, ids in self.current.items():
            table = self.store.to_table(name)
            assert (table.column("id").to_pylist() if table.num_rows else []) == ids, name
            d = self.store.get_dataset(name)
            assert d.next_key == len(ids) and d.frozen == (name in self.frozen)
            assert self.store.missing_ranges(name) == []
        for (name, version), ids in self.versions.items():
            table = self.store.to_table(name, version=version)
            assert (table.column("id").to_pylist() if table.num_rows else []) == ids, (name, version)
        assert {(n, v.version) for n in DATASETS for v in self.store.list_versions(n)} == set(self.versions)

    @invariant()
    def every_container_is_intact(self) -> None:
        for name in self.current:
            assert self.store.verify(name) == []


def _run(max_examples: int, steps: int) -> None:
    StoreMachine.TestCase.settings = settings(max_examples=max_examples, stateful_step_count=steps, deadline=None,
                                              suppress_health_check=[HealthCheck.too_slow])
    StoreMachine.TestCase().runTest()


def test_store_against_a_model() -> None:
    _run(max_examples=25, steps=20)


@pytest.mark.slow
def test_store_against_a_model_long() -> None:
    _run(max_examples=150, steps=40)
