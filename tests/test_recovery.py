"""Crash recovery under injected faults: after any interrupted flush, old data or new data, never other.

Every scenario is first run uninterrupted to count its mutating storage calls (write_at and
truncate, across the main file and the journal) and to snapshot every committed version
(each write of node 0 with the "update pending" flag clear). Then it is re-run with a fault
at every call N, in both modes ("fail": that call raises EIO; "stop": power cut, that call
and all later ones are lost), and the surviving bytes are reopened.

What Gramine's write order guarantees (docs/format.md, crash recovery): the journal (old
images of every node about to change, then node 1, then node 0) is written and synced before
node 0 is rewritten with the flag set; only then are the new nodes written, and node 0 last
with the flag clear. So a fault before the flagged node 0 leaves the file untouched (old);
a fault after it leaves the flag set with a complete journal, and replay restores old; once
the final node 0 is written the file is new. With recovery enabled, reopen must therefore
always give a committed version, never an error.
"""

from __future__ import annotations

import contextlib
import errno
import random
import struct
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import pytest
from faulty_storage import FaultPlan, FaultyStorage
from helpers import decode

from pfs import (
    CorruptedNodeError,
    FileClosedError,
    HostFile,
    MemoryStorage,
    PfsError,
    ProtectedFile,
    RecoveryFailedError,
    RecoveryNeededError,
    Storage,
    TruncatedFileError,
)

KEY = bytes(range(50, 66))
PATH = "data/file"
OLD_SIZE = 400_000  # past the root MHT's 96 data nodes (396288 bytes): two MHT nodes


@lru_cache(maxsize=1)
def old_content() -> bytes:
    return random.Random(1).randbytes(OLD_SIZE)


@lru_cache(maxsize=1)
def base_file() -> bytes:
    storage = MemoryStorage(name="base")
    with ProtectedFile.create(storage, KEY, PATH) as pf:
        pf.write(0, old_content())
    return bytes(storage.data)


def put(model: bytearray, pf: ProtectedFile, offset: int, data: bytes) -> None:
    pf.write(offset, data)
    if offset > len(model):
        model.extend(bytes(offset - len(model)))
    model[offset:offset + len(data)] = data


def cut(model: bytearray, pf: ProtectedFile, size: int) -> None:
    pf.truncate(size)
    if size < len(model):
        del model[size:]
    else:
        model.extend(bytes(size - len(model)))


def sc_writes(pf, model):
    rng = random.Random(2)
    for off, n in [(10, 50), (3070, 10), (3072 + 4096 * 50 + 7, 100), (3072 + 4096 * 96 + 1, 5000),
                   (399_990, 10)]:
        put(model, pf, off, rng.randbytes(n))


def sc_extend(pf, model):
    rng = random.Random(3)
    put(model, pf, 5000, rng.randbytes(10))
    put(model, pf, 398_000, rng.randbytes(30_000))  # contiguous extension
    put(model, pf, 470_000, rng.randbytes(100))  # past the end: a zero-filled gap


def sc_truncate_shrink(pf, model):
    rng = random.Random(4)
    put(model, pf, 100_000, rng.randbytes(9000))
    put(model, pf, 399_000, rng.randbytes(10))
    cut(model, pf, 250_000)  # flushes, then cuts the host file


def sc_truncate_tiny(pf, model):
    cut(model, pf, 1000)


def sc_truncate_grow(pf, model):
    cut(model, pf, 430_000)
    put(model, pf, 3000, b"\x77" * 200)


def sc_evictions(pf, model):
    """A small cache: several flushes (each one a transaction) inside one close."""
    rng = random.Random(5)
    for _ in range(12):
        put(model, pf, rng.randrange(0, OLD_SIZE - 100), rng.randbytes(rng.randrange(1, 6000)))


# name -> (function, cache_size, number of transactions is exactly one)
SCENARIOS = {
    "writes": (sc_writes, 48, True),
    "extend": (sc_extend, 48, True),
    "truncate_shrink": (sc_truncate_shrink, 48, True),
    "truncate_tiny": (sc_truncate_tiny, 48, True),
    "truncate_grow": (sc_truncate_grow, 48, True),
    "evictions": (sc_evictions, 4, False),
}


@dataclass
class Outcome:
    main: bytes
    journal: bytes
    plan: FaultPlan
    raised: BaseException | None
    model: bytes
    commits: list[bytes] = field(default_factory=list)  # plaintexts of committed versions


def run(name: str, at: int | None, mode: str = "stop", *, journal: bool = True) -> Outcome:
    fn, cache_size, _single = SCENARIOS[name]
    main = MemoryStorage(base_file(), name="main")
    rec = MemoryStorage(name="main.gramine.recovery")
    plan = FaultPlan(at, mode)
    commits: list[bytes] = []

    def snapshot(storage, offset, data):
        if at is None and offset == 0 and not data[58] & 1:
            commits.append(decode(bytes(storage.inner.data), KEY).plaintext)

    fmain = FaultyStorage(main, plan, "main", on_write=snapshot)
    frec = FaultyStorage(rec, plan, "recovery")
    assert isinstance(fmain, Storage)
    pf = ProtectedFile.open(fmain, KEY, PATH, writable=True, cache_size=cache_size,
                            recovery=frec if journal else None)
    model = bytearray(old_content())
    raised = None
    try:
        fn(pf, model)
        pf.close()
    except OSError as exc:
        raised = exc
        if mode == "stop":
            # after a power cut the process would be dead; here it runs on against storage that
            # drops writes, so re-reading a node it "wrote" may legitimately fail
            assert plan.cut and isinstance(exc, PfsError), exc
            with contextlib.suppress(OSError):
                pf.close()
        else:
            if isinstance(exc, PfsError):
                with pytest.raises(FileClosedError):
                    pf.read(0, 1)  # a file whose flush failed stays unusable
            pf.close()
    return Outcome(bytes(main.data), bytes(rec.data), plan, raised, bytes(model), commits)


@cache
def reference(name: str, journal: bool = True) -> Outcome:
    out = run(name, None, journal=journal)
    assert out.raised is None
    assert out.commits and out.commits[-1] == out.model
    if SCENARIOS[name][2]:
        assert len(out.commits) == 1, "expected a single flush"
    return out


def read_all(storage, recovery=None) -> bytes:
    with ProtectedFile.open(storage, KEY, PATH, recovery=recovery) as pf:
        return pf.read(0, pf.size + 1)


def _all_faults():
    for name in SCENARIOS:
        for mode in ("stop", "fail"):
            yield pytest.param(name, mode, id=f"{name}-{mode}")


@pytest.mark.parametrize(("name", "mode"), list(_all_faults()))
def test_fault_at_every_write_with_recovery(name: str, mode: str):
    ref = reference(name)
    valid = [old_content(), *ref.commits]
    total = ref.plan.count
    assert total >= 2
    seen_flag = seen_old = seen_new = 0
    for n in range(1, total + 2):
        out = run(name, n, mode)
        if n <= total:
            assert out.plan.count == n or mode == "stop"
            if mode == "fail":
                assert isinstance(out.raised, OSError) and out.raised.errno == errno.EIO
        else:
            assert out.raised is None
            assert decode(out.main, KEY).plaintext == ref.model
        flagged = bool(out.main[58] & 1)
        seen_flag += flagged
        # without the journal: the flag (if set) demands recovery; otherwise a committed version
        if flagged:
            with pytest.raises(RecoveryNeededError):
                read_all(MemoryStorage(out.main, name="main"))
        else:
            assert read_all(MemoryStorage(out.main, name="main")) in valid, f"N={n}"
        # with the journal: always a committed version, never an error
        storage = MemoryStorage(out.main, name="main")
        content = read_all(storage, MemoryStorage(out.journal, name="journal"))
        assert content in valid, f"N={n}: recovered content is not a committed version"
        seen_old += content == old_content()
        seen_new += content == ref.model
        # replay left a consistent file with the flag clear, readable without the journal
        assert not storage.data[58] & 1
        assert read_all(MemoryStorage(bytes(storage.data), name="main")) == content
    if name != "truncate_tiny":  # no MHT change there: a single node-0 write, nothing journaled
        assert seen_flag > 0
    assert seen_old > 0 and seen_new > 0


@pytest.mark.parametrize(("name", "mode"), list(_all_faults()))
def test_fault_at_every_write_without_recovery(name: str, mode: str):
    """No journal: an interrupted flush may corrupt the file, but it's detected, never wrong data."""
    ref = reference(name, journal=False)
    valid = [old_content(), *ref.commits]
    assert not ref.journal
    for n in range(1, ref.plan.count + 1):
        out = run(name, n, mode, journal=False)
        assert not out.main[58] & 1
        try:
            content = read_all(MemoryStorage(out.main, name="main"))
        except (CorruptedNodeError, TruncatedFileError):
            continue
        assert content in valid, f"N={n}"


def test_write_order_matches_gramine():
    """The journaled flush issues its calls in Gramine's order."""
    ref = reference("writes")
    log = [entry[:3] for entry in ref.plan.log]
    assert log[0] == ("truncate", "recovery", 0)
    first_main = next(i for i, e in enumerate(log) if e[1] == "main")
    journal_writes = log[1:first_main]
    assert all(e[0] == "write" and e[1] == "recovery" for e in journal_writes)
    assert [e[2] for e in journal_writes] == [i * 4104 for i in range(len(journal_writes))]
    assert log[first_main] == ("write", "main", 0)  # the flagged node 0
    assert log[-1] == ("write", "main", 0)  # the final node 0
    assert all(e[1] == "main" and e[2] != 0 for e in log[first_main + 1:-1])
    # the journal holds the old images: node 1 and node 0 last
    records = [ref.journal[i:i + 4104] for i in range(0, len(ref.journal), 4104)]
    numbers = [struct.unpack("<Q", r[:8])[0] for r in records]
    assert numbers[-2:] == [1, 0]
    base = base_file()
    for number, record in zip(numbers, records, strict=True):
        assert record[8:] == base[number * 4096:(number + 1) * 4096]
    # a write may cover a run of consecutive nodes
    rewritten = {n for e in ref.plan.log[first_main + 1:-1] for n in range(e[2] // 4096, (e[2] + e[3]) // 4096)}
    assert set(numbers) == {n for n in rewritten if n * 4096 < len(base)} | {0}


def interrupted_after_flag() -> Outcome:
    """A power cut right after node 0 was written with the flag set."""
    ref = reference("writes")
    first_main = next(i for i, e in enumerate(ref.plan.log) if e[1] == "main")
    out = run("writes", first_main + 2, "stop")
    assert out.main[58] & 1
    return out


def test_recovery_needed_without_journal_storage():
    out = interrupted_after_flag()
    with pytest.raises(RecoveryNeededError) as info:
        read_all(MemoryStorage(out.main, name="main"))
    assert "main" in str(info.value)


@pytest.mark.parametrize("damage", ["short_by_one", "empty", "extra_byte", "flagged_node0"])
def test_damaged_journal(damage: str):
    out = interrupted_after_flag()
    journal = out.journal
    if damage == "short_by_one":
        journal = journal[:-1]
    elif damage == "empty":
        journal = b""
    elif damage == "extra_byte":
        journal = journal + b"\0"
    else:  # the node-0 record itself carries the flag: replay can't reach a consistent version
        last = bytearray(journal[-4104:])
        last[8 + 58] |= 1
        journal = journal[:-4104] + bytes(last)
    storage = MemoryStorage(out.main, name="main")
    with pytest.raises(RecoveryFailedError):
        read_all(storage, MemoryStorage(journal, name="journal"))
    if damage != "flagged_node0":
        assert bytes(storage.data) == out.main  # a rejected journal is not applied at all
    # the intact journal still works
    assert read_all(MemoryStorage(out.main, name="main"), MemoryStorage(out.journal)) == old_content()


def test_recovered_file_is_writable_again():
    out = interrupted_after_flag()
    storage = MemoryStorage(out.main, name="main")
    journal = MemoryStorage(out.journal, name="journal")
    with ProtectedFile.open(storage, KEY, PATH, writable=True, recovery=journal) as pf:
        assert pf.read(0, OLD_SIZE) == old_content()
        pf.write(OLD_SIZE, b"more")
    assert read_all(storage) == old_content() + b"more"
    assert decode(bytes(storage.data), KEY).plaintext == old_content() + b"more"


def test_fresh_file_first_flush_is_not_journaled_then_later_ones_are():
    storage = MemoryStorage(name="main")
    journal = MemoryStorage(name="journal")
    pf = ProtectedFile.create(storage, KEY, PATH, recovery=journal)
    pf.write(0, old_content()[:20_000])  # few enough nodes for one flush
    pf.flush()
    assert journal.size() == 0  # nothing on disk to roll back to
    pf.write(10, b"x")  # only node 0 changes: a single write, nothing to journal
    pf.flush()
    assert journal.size() == 0
    pf.write(10_000, b"x")  # a data node and the root MHT change: journaled
    pf.flush()
    assert journal.size() > 0 and journal.size() % 4104 == 0
    pf.close()


@pytest.mark.parametrize("mode", ["stop", "fail"])
def test_host_files_with_recovery_file(tmp_path: Path, mode: str):
    """The same guarantee with real host files and ``<file>.gramine.recovery``."""
    ref = reference("extend")
    valid = [old_content(), *ref.commits]
    path = tmp_path / "file"
    journal_path = tmp_path / "file.gramine.recovery"
    for n in range(1, ref.plan.count + 1):
        path.write_bytes(base_file())
        journal_path.unlink(missing_ok=True)
        plan = FaultPlan(n, mode)
        main = FaultyStorage(HostFile(path, writable=True), plan, "main")
        rec = FaultyStorage(HostFile(journal_path, writable=True, create=True), plan, "recovery")
        pf = ProtectedFile.open(main, KEY, PATH, writable=True, recovery=rec)
        model = bytearray(old_content())
        try:
            sc_extend(pf, model)
            pf.close()
        except PfsError:
            assert mode == "fail"
            pf.close()
        flagged = bool(path.read_bytes()[58] & 1)
        if flagged:
            with pytest.raises(RecoveryNeededError):
                read_all(HostFile(path))
        content = read_all(HostFile(path, writable=True), HostFile(journal_path, writable=True))
        assert content in valid, f"N={n}"
        assert not path.read_bytes()[58] & 1


def test_failed_host_truncate_is_a_pfs_error():
    """A storage error while cutting the host file surfaces like a failed write does.

    errors.py: every error is an OSError with an errno whose message names the file. Flush
    failures are wrapped ("<name>: write failed: ..."); the host-file truncate at the end of
    ProtectedFile.truncate is not, so the caller gets the storage's bare OSError.
    """
    plan = FaultPlan(2, "fail")  # call 1: node 0 (no MHT left, so no journal); call 2: the cut
    storage = FaultyStorage(MemoryStorage(base_file(), name="main"), plan, "main")
    pf = ProtectedFile.open(storage, KEY, PATH, writable=True)
    with pytest.raises(PfsError) as info:
        pf.truncate(1000)
    assert info.value.errno == errno.EIO
    assert "main" in str(info.value)


def test_v1_file_interrupted_migration(vectors_dir: Path, wrap_key: bytes):
    """A v1 file's first journaled flush (which also migrates it to v2) is atomic too."""
    raw = (vectors_dir / "enc_v1/size_400384").read_bytes()
    old = (vectors_dir / "plain/size_400384").read_bytes()
    bound = "enc_v1/size_400384"
    new = bytearray(old)
    new[200_000:200_010] = b"0123456789"

    def attempt(at):
        plan = FaultPlan(at, "stop")
        main = MemoryStorage(raw, name="v1")
        rec = MemoryStorage(name="v1.gramine.recovery")
        pf = ProtectedFile.open(FaultyStorage(main, plan, "main"), wrap_key, bound, writable=True,
                                recovery=FaultyStorage(rec, plan, "recovery"))
        pf.write(200_000, b"0123456789")
        pf.close()
        return plan, bytes(main.data), bytes(rec.data)

    plan, final, _ = attempt(None)
    assert final[8] == 2
    for n in range(1, plan.count + 1):
        _plan, main, journal = attempt(n)
        with ProtectedFile.open(MemoryStorage(main, name="v1"), wrap_key, bound,
                                recovery=MemoryStorage(journal)) as pf:
            content = pf.read(0, pf.size + 1)
            assert content in (old, bytes(new)), f"N={n}"
            if content == old:
                assert pf.version in ((1, 0), (2, 0))


def test_faults_land_on_the_vectored_calls_production_makes():
    """Production writes runs of nodes with ``writev_at`` and reads them with ``readv_at`` when
    the storage has them (``pal.HostFile`` does); the faulty wrapper offers both, so the calls
    that fail or get cut are those production makes."""
    ref = reference("extend", journal=False)
    calls = [i for i, e in enumerate(ref.plan.log, 1) if e[0] == "writev"]
    assert calls, "no vectored write was made: the faults would miss production's write path"
    for n in calls:
        out = run("extend", n, "fail", journal=False)
        assert out.plan.log[n - 1][0] == "writev" and out.plan.log[n - 1][-1] == "failed"
        assert isinstance(out.raised, OSError) and out.raised.errno == errno.EIO
        out = run("extend", n, "stop", journal=False)
        assert out.plan.log[n - 1][0] == "writev" and out.plan.log[n - 1][-1] == "dropped"
    plan = FaultPlan(None)
    storage = FaultyStorage(MemoryStorage(base_file(), name="main"), plan, "main")
    with ProtectedFile.open(storage, KEY, PATH) as pf:
        assert pf.read(0, OLD_SIZE) == old_content()
    assert plan.vector_reads > 0
