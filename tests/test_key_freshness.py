"""No node key ever encrypts two different things, on every write path (issue 8, item 25).

The whole format rests on it: every node is sealed with AES-GCM under the zero IV, so a key that
sealed two different plaintexts gives both away (and lets tags be forged). Every path that
writes is run here, every version it leaves on disk is snapshotted (after each flush), and the
independent reader of tests/helpers.py takes every node key out of every version. A node left
as it was between two versions keeps its key and its ciphertext, which is fine; what must never
happen is one key with two different sealed nodes (nor one metadata nonce with two different
metadata nodes), nor two nodes of one version under one key.

Paths: truncate (shrink and grow), rename, recovery replay, the run-based ``_write_run``, the
stream encryptor with forked ``--jobs`` workers, ``pfs rekey``, and writes through a real
``pfs mount --rw``.
"""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import pytest
from faulty_storage import FaultPlan, FaultyStorage
from fuse_helpers import PFS, Mounter, run
from helpers import N, decode, spec_counts

import pfs.stream as stream
from pal import HostFile
from pfs import MemoryStorage, PfsError, ProtectedFile
from pfs.layout import NODE_SIZE

KEY = bytes(range(70, 86))


class Ledger:
    """Every (node key -> sealed node) and (nonce -> sealed metadata) seen in any version."""

    def __init__(self) -> None:
        self.sealed_by_key: dict[bytes, tuple[bytes, str]] = {}
        self.meta_by_nonce: dict[bytes, tuple[bytes, str]] = {}
        self.versions = 0
        self.nodes = 0

    def add(self, raw: bytes, kdk: bytes, where: str) -> None:
        """Take every key of the version ``raw`` (a whole protected file)."""
        dec = decode(raw, kdk)
        keys = [key for key, _ in dec.node_keys.values()]
        assert len(set(keys)) == len(keys), f"{where}: two nodes of one version share a key"
        for phys, (key, tag) in dec.node_keys.items():
            sealed = raw[phys * N:(phys + 1) * N] + tag
            first, first_where = self.sealed_by_key.setdefault(key, (sealed, where))
            assert first == sealed, (f"{where}: node {phys} is sealed under a key that sealed a different "
                                     f"node before ({first_where})")
            self.nodes += 1
        start = 59 if dec.major == 2 else 58
        meta = raw[start:start + 3884] + dec.meta_tag
        first, first_where = self.meta_by_nonce.setdefault(dec.nonce, (meta, where))
        assert first == meta, f"{where}: the metadata nonce of {first_where} sealed different metadata"
        self.versions += 1

    def add_all(self, *others: Ledger) -> None:
        for other in others:
            for key, (sealed, where) in other.sealed_by_key.items():
                first, first_where = self.sealed_by_key.setdefault(key, (sealed, where))
                assert first == sealed, f"{where} and {first_where} sealed different nodes under one key"


def snapshotting(storage: MemoryStorage, ledger: Ledger, label: str, plan: FaultPlan | None = None) -> FaultyStorage:
    """``storage`` behind a faulty wrapper (vectored calls included) that puts every committed
    version (node 0 written with the "update pending" flag clear) into ``ledger``."""
    count = [0]

    def on_write(wrapper, offset, data):
        if offset == 0 and not data[58] & 1:
            count[0] += 1
            ledger.add(bytes(wrapper.inner.data), KEY, f"{label} version {count[0]}")

    return FaultyStorage(storage, plan or FaultPlan(None), label, on_write=on_write)


def test_truncate_shrink_and_grow() -> None:
    ledger = Ledger()
    rng = random.Random(1)
    storage = snapshotting(MemoryStorage(name="t"), ledger, "truncate")
    pf = ProtectedFile.create(storage, KEY, "t", cache_size=6)
    pf.write(0, rng.randbytes(900_000))
    pf.flush()
    for size in (500_000, 1_200_000, 396_289, 1000, 3073, 430_000, 0, 800_000):
        pf.truncate(size)
        pf.write(rng.randrange(0, size + 1), rng.randbytes(rng.randrange(1, 9000)))
        pf.flush()
    pf.close()
    assert ledger.versions >= 18 and ledger.nodes > 1000


def test_rename() -> None:
    ledger = Ledger()
    rng = random.Random(2)
    storage = snapshotting(MemoryStorage(name="r"), ledger, "rename")
    pf = ProtectedFile.create(storage, KEY, "r0")
    pf.write(0, rng.randbytes(450_000))
    for i in range(1, 8):
        pf.rename(f"renamed/{i}")  # flushes
        pf.write(rng.randrange(0, 450_000), rng.randbytes(5000))
    pf.close()
    assert decode(bytes(storage.inner.data), KEY).path == b"renamed/7"
    assert ledger.versions >= 8


@pytest.mark.parametrize("mode", ["stop", "fail"])
def test_recovery_replay_then_more_writes(mode: str) -> None:
    """A journaled flush cut at every call, rolled back by replay on open, then written again:
    the versions before, after the replay and after the new writes share no key wrongly."""
    rng = random.Random(3)
    base = MemoryStorage(name="base")
    with ProtectedFile.create(base, KEY, "rec") as pf:
        pf.write(0, rng.randbytes(420_000))
    changes = [(rng.randrange(0, 420_000), rng.randbytes(rng.randrange(1, 9000))) for _ in range(6)]

    def attempt(at: int | None, ledger: Ledger) -> FaultPlan:
        plan = FaultPlan(at, mode)
        main = MemoryStorage(bytes(base.data), name="main")
        journal = MemoryStorage(name="main.gramine.recovery")
        pf = ProtectedFile.open(snapshotting(main, ledger, f"cut at {at}", plan), KEY, "rec", writable=True,
                                recovery=FaultyStorage(journal, plan, "journal"))
        try:
            for offset, data in changes:
                pf.write(offset, data)
            pf.close()
        except PfsError:
            with_suppressed_close(pf)
        plan.armed = False  # the machine is back: replay and write again
        again = ProtectedFile.open(snapshotting(main, ledger, f"after replay of cut {at}"), KEY, "rec",
                                   writable=True, recovery=journal)
        ledger.add(bytes(main.data), KEY, f"replayed cut {at}")
        for offset, data in changes[:3]:
            again.write(offset, rng.randbytes(len(data)))
        again.close()
        return plan

    ledger = Ledger()
    ledger.add(bytes(base.data), KEY, "base")
    total = attempt(None, ledger).count
    assert total > 5
    for at in range(1, total + 1):
        attempt(at, ledger)
    assert ledger.versions >= 2 * total + 1  # each attempt: the replayed version and the new one


def with_suppressed_close(pf: ProtectedFile) -> None:
    with contextlib.suppress(OSError):  # after a power cut, closing may fail too
        pf.close()


def test_write_run() -> None:
    """Whole-node writes of two nodes or more go straight to storage (``_write_run``, through
    ``writev_at``): the same range rewritten again and again gets new keys every time."""
    ledger = Ledger()
    rng = random.Random(4)
    plan = FaultPlan(None)
    storage = snapshotting(MemoryStorage(name="w"), ledger, "write_run", plan)
    runs = []
    real = ProtectedFile._write_run

    def counting(self, first, count, src):
        runs.append((first, count))
        return real(self, first, count, src)

    pf = ProtectedFile.create(storage, KEY, "w")
    pf._write_run = counting.__get__(pf)  # counts the calls and runs the real method
    start = 3072 + 5 * NODE_SIZE
    for _ in range(6):
        pf.write(start, rng.randbytes(150 * NODE_SIZE))  # crosses an MHT group: two runs
        pf.flush()
        pf.write(3072, rng.randbytes(3 * NODE_SIZE))
        pf.flush()
    pf.close()
    assert len(runs) >= 12, runs
    assert any(e[0] == "writev" for e in plan.log), "the vectored write path was not used"
    assert ledger.versions >= 12


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_stream_encrypt_with_forked_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    """Forked workers draw their own keys: none is shared within a file or between two
    encryptions of the same plaintext (workers forked from one parent share any userspace
    random state: the keys must come from the kernel)."""
    monkeypatch.setattr(stream, "BATCH_GROUPS", 3)
    monkeypatch.setattr(stream, "MIN_PARALLEL_GROUPS", 1)
    src = tmp_path / "plain"
    size = 20 * 96 * NODE_SIZE + 3072 + 7
    src.write_bytes(random.Random(5).randbytes(size))
    ledgers = []
    for i in range(2):
        dst = tmp_path / f"enc{i}"
        with HostFile(src) as s, HostFile(dst, writable=True, create=True) as d:
            stream.encrypt_stream(s, d, KEY, "/s", jobs=jobs)
        ledger = Ledger()
        ledger.add(dst.read_bytes(), KEY, f"encryption {i}")
        ledgers.append(ledger)
    assert not set(ledgers[0].sealed_by_key) & set(ledgers[1].sealed_by_key), "two encryptions share a key"
    ndata, nmht, _ = spec_counts(size)
    assert ledgers[0].nodes == ndata + nmht  # every MHT and data node


def test_pfs_rekey(tmp_path: Path) -> None:
    old_key, new_key = tmp_path / "old.key", tmp_path / "new.key"
    old_key.write_bytes(KEY)
    new_key.write_bytes(bytes(range(200, 216)))
    plain = tmp_path / "plain"
    plain.write_bytes(random.Random(6).randbytes(2_000_000))
    enc = tmp_path / "enc"
    run([PFS, "encrypt", "-q", "-w", old_key, "-i", plain, "-o", enc, "--bind-path", "/r"], check=True)
    ledger = Ledger()
    ledger.add(enc.read_bytes(), KEY, "before rekey")
    keys = [KEY, new_key.read_bytes()]
    for i in range(4):  # back and forth
        key_file, next_file = (old_key, new_key) if i % 2 == 0 else (new_key, old_key)
        run([PFS, "rekey", "-q", "-w", key_file, "--new-key", next_file, enc], check=True)
        ledger.add(enc.read_bytes(), keys[(i + 1) % 2], f"rekey {i + 1}")
    assert ledger.versions == 5


# ---------------------------------------------------------------------- a real FUSE mount

def test_fuse_writes_and_fsyncs(tmp_path: Path, mounter: Mounter) -> None:
    """Many writes and fsyncs on one open file of a real ``pfs mount --rw``; after each fsync
    the encrypted file in ENCDIR is a complete version, and all of them go into the ledger."""
    key = tmp_path / "k"
    key.write_bytes(KEY)
    enc, mnt = tmp_path / "enc", tmp_path / "mnt"
    enc.mkdir()
    mnt.mkdir()
    mounter.pfs(key, enc, mnt, "--rw", background=True)
    ledger = Ledger()
    rng = random.Random(7)
    fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        size = 0
        for i in range(30):
            if i % 7 == 6:
                size = rng.randrange(0, size + 1)
                os.ftruncate(fd, size)
            offset = rng.randrange(0, size + 4096)
            data = rng.randbytes(rng.choice([1, 100, 4096, 20_000, 300_000]))
            os.pwrite(fd, data, offset)
            size = max(size, offset + len(data))
            os.fsync(fd)
            ledger.add((enc / "f").read_bytes(), KEY, f"after fsync {i + 1}")
    finally:
        os.close(fd)
    assert ledger.versions == 30 and ledger.nodes > 100
