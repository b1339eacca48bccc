"""Model-based testing: a ProtectedFile against a bytearray, with evictions, reopens and renames."""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import decode, examples
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pfs import HostFile, MemoryStorage, PathMismatchError, ProtectedFile

KEY = bytes(range(100, 116))
MAX_OFFSET = 1_300_000
BOUNDARIES = [0, 3071, 3072, 3073, 7167, 7168, 7169, 396_287, 396_288, 396_289, 400_383, 400_384,
              400_385, 792_575, 792_576, 1_185_791, 1_185_792, 1_185_793]

offsets = st.one_of(
    st.integers(0, MAX_OFFSET),
    st.builds(lambda b, d: max(0, b + d), st.sampled_from(BOUNDARIES), st.integers(-5, 5)),
)
# (length, seed): the payload is made from a seed, so writes can be large without a large draw
payloads = st.tuples(st.one_of(st.integers(1, 64), st.integers(1, 20_000)), st.integers(0, 2**32))
PATHS = ["a", "dir/b", "/abs/c", "x" * 300]


class ProtectedFileMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="pfs-stateful-"))
        self.model = bytearray()
        self.pf: ProtectedFile | None = None

    def teardown(self):
        if self.pf is not None:
            self.pf.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _storage(self, create: bool = False):
        if self.backend == "memory":
            return self.memory
        return HostFile(self.tmp / "file", writable=True, create=create)

    @initialize(backend=st.sampled_from(["host", "memory"]), cache_size=st.sampled_from([1, 2, 3, 48]))
    def start(self, backend, cache_size):
        self.backend = backend
        self.cache_size = cache_size
        self.memory = MemoryStorage(name="mem")
        self.path = "a"
        self.pf = ProtectedFile.create(self._storage(create=True), KEY, self.path, cache_size=cache_size)

    @rule(offset=offsets, payload=payloads)
    def write(self, offset, payload):
        length, seed = payload
        data = random.Random(seed).randbytes(length)
        assert self.pf.write(offset, data) == length
        if offset > len(self.model):
            self.model.extend(bytes(offset - len(self.model)))
        self.model[offset:offset + length] = data

    @rule(offset=offsets, size=st.integers(0, 20_000))
    def read(self, offset, size):
        assert self.pf.read(offset, size) == self.model[offset:offset + size]

    @rule(size=offsets)
    def truncate(self, size):
        self.pf.truncate(size)
        if size < len(self.model):
            del self.model[size:]
        else:
            self.model.extend(bytes(size - len(self.model)))

    @rule()
    def flush(self):
        self.pf.flush()

    @rule(new=st.sampled_from(PATHS))
    def rename(self, new):
        self.pf.rename(new)
        old, self.path = self.path, new
        assert self.pf.bound_path == new
        self.pf.close()
        if old != new:
            with pytest.raises(PathMismatchError):
                ProtectedFile.open(self._storage(), KEY, old)
        self._reopen()

    @rule()
    def close_and_reopen(self):
        self.pf.close()
        self._reopen()

    @precondition(lambda self: len(self.model) < 600_000)
    @rule()
    def independent_reader_agrees(self):
        self.pf.flush()
        raw = bytes(self.memory.data) if self.backend == "memory" else (self.tmp / "file").read_bytes()
        dec = decode(raw, KEY)
        assert dec.path == self.path.encode()
        assert dec.plaintext == self.model

    def _reopen(self):
        self.pf = ProtectedFile.open(self._storage(), KEY, self.path, writable=True, cache_size=self.cache_size)
        assert self.pf.size == len(self.model)
        assert self.pf.read(0, len(self.model) + 1) == self.model

    @invariant()
    def size_matches(self):
        if self.pf is not None:
            assert self.pf.size == len(self.model)


ProtectedFileMachine.TestCase.settings = settings(
    max_examples=examples(200, 2000), stateful_step_count=examples(40, 80), deadline=None,
    report_multiple_bugs=False)
TestProtectedFileMachine = ProtectedFileMachine.TestCase


# ---------------------------------------------------------------- second MHT level, deterministically

SECOND_LEVEL = 12_979_205  # in the first second-level MHT node's range


@pytest.mark.parametrize("backend", ["host", "memory"])
def test_second_level_mht(tmp_path: Path, backend: str):
    storage_path = tmp_path / "big"
    memory = MemoryStorage(name="mem")

    def storage(create=False):
        return memory if backend == "memory" else HostFile(storage_path, writable=True, create=create)

    rng = random.Random(12)
    head = rng.randbytes(5000)
    tail = rng.randbytes(9000)
    with ProtectedFile.create(storage(True), KEY, "big", cache_size=3) as pf:
        pf.write(0, head)
        pf.write(SECOND_LEVEL, tail)
        assert pf.size == SECOND_LEVEL + len(tail)
        assert pf.tree_depth == 2  # root (0) -> MHT 1..32 (1) -> MHT 33.. (2)
    model = bytearray(head) + bytes(SECOND_LEVEL - len(head)) + tail
    with ProtectedFile.open(storage(), KEY, "big", writable=True, cache_size=2) as pf:
        assert pf.size == len(model)
        for off in [0, 4990, SECOND_LEVEL - 10, SECOND_LEVEL + 4000, len(model) - 5, 6_000_000]:
            assert pf.read(off, 10_000) == model[off:off + 10_000]
        # overwrite across the boundary between the last first-level and first second-level MHT
        first_l2 = 3072 + 4096 * 96 * 33  # MHT node 33 is the first at depth 2
        patch = rng.randbytes(20_000)
        pf.write(first_l2 - 10_000, patch)
        model[first_l2 - 10_000:first_l2 + 10_000] = patch
        pf.truncate(SECOND_LEVEL + 100)  # shrink across the last node
        del model[SECOND_LEVEL + 100:]
        pf.truncate(SECOND_LEVEL + 50_000)  # and grow again: zeros
        model.extend(bytes(50_000 - 100))
        assert pf.read(SECOND_LEVEL, 60_000) == model[SECOND_LEVEL:]
    raw = bytes(memory.data) if backend == "memory" else storage_path.read_bytes()
    dec = decode(raw, KEY)
    assert dec.plaintext == model
    with ProtectedFile.open(storage(), KEY, "big", writable=True) as pf:
        pf.truncate(first_l2 - 1)  # below the second level again: depth 1 goes away
        assert pf.tree_depth == 1
        del model[first_l2 - 1:]
    dec = decode(bytes(memory.data) if backend == "memory" else storage_path.read_bytes(), KEY)
    assert dec.plaintext == model
    assert len(dec.mht_plain) == 33
