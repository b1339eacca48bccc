"""Dataset jobs on a Dask cluster (pfs.dask and pfs encrypt|decrypt|verify|rekey --dask/--scheduler).

Real clusters: ``distributed.LocalCluster(processes=True)`` (worker processes), except where the
test needs one address space (``memory://`` is per process; the fixed-randomness layout check
patches the random source): there the cluster's workers are threads of this process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import require

require(importlib.util.find_spec("distributed") is not None and importlib.util.find_spec("fsspec") is not None,
        "needs the [data] extra (dask[distributed], fsspec)")

from distributed import Client, LocalCluster, get_task_stream  # noqa: E402

from pfs import dask as pdask  # noqa: E402
from pfs import dask_tasks  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PFS = [sys.executable, "-m", "tools.pfs_cli"]
KEY = bytes(range(16))
MIB = 1 << 20


def _cluster(workers: int = 2, processes: bool = True) -> LocalCluster:
    import logging

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=":0",
                        silence_logs=logging.CRITICAL)


@pytest.fixture(scope="module")
def client():
    with _cluster() as cluster, Client(cluster) as c:
        yield c


def _pfs(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*PFS, *args], cwd=REPO, capture_output=True, text=True, check=check)


def _key_file(tmp_path: Path, key: bytes = KEY, name: str = "k.key") -> Path:
    path = tmp_path / name
    path.write_bytes(key)
    path.chmod(0o600)
    return path


def _write_random(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MIB)
            f.write(rng.randbytes(n))
            left -= n


def _small_tree(root: Path, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    for i in range(count):
        sub = root / f"d{i % 17}" / f"e{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i}.bin").write_bytes(rng.randbytes(rng.choice([0, 1, 3071, 3072, 3073, 4096, 20000, 400000])))


def _same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def _no_temps(root: Path) -> None:
    left = [p for p in root.rglob("*") if ".pfs-dask-" in p.name or ".pfs-tmp-" in p.name]
    assert left == []


def test_tree_of_1000_files_and_two_300mib_files(client, tmp_path):
    """The issue's tree, once: encrypted on the cluster (the large files cut into pieces over
    both workers), `pfs verify` passes, decrypted on the cluster and compared."""
    src, enc, dec = tmp_path / "src", tmp_path / "enc", tmp_path / "dec"
    _small_tree(src, 1000)
    for i in range(2):
        _write_random(src / "big" / f"large{i}.bin", 300 * MIB + 12345 * i, seed=100 + i)
    with get_task_stream(client) as stream:
        result = pdask.encrypt_tree(src.as_uri(), enc.as_uri(), key=KEY, client=client, bind_prefix="/data")
    ran_on = {t["worker"] for t in stream.data if "split_piece" in str(t["key"])}
    assert result.ok, result.failed[:3]
    assert len(result.files) == 1002
    assert len(ran_on) == 2, ran_on
    key_file = _key_file(tmp_path)
    out = _pfs("verify", "-w", str(key_file), "--bind-prefix", "/data", str(enc))
    assert out.stdout.strip().endswith("1002 files ok")
    back = pdask.decrypt_tree(str(enc), str(dec), key=KEY, client=client, bind_prefix="/data")
    assert back.ok, back.failed[:3]
    _same_tree(src, dec)
    _no_temps(enc)
    _no_temps(dec)
    # the single-machine reader takes a split file, and its size is pfs encrypt's
    one = tmp_path / "one.bin"
    _pfs("decrypt", "-w", str(key_file), "-i", str(enc / "big" / "large1.bin"), "-o", str(one))
    assert one.read_bytes() == (src / "big" / "large1.bin").read_bytes()
    ref = tmp_path / "ref.enc"
    _pfs("encrypt", "-w", str(key_file), "-i", str(src / "big" / "large1.bin"), "-o", str(ref))
    assert ref.stat().st_size == (enc / "big" / "large1.bin").stat().st_size


def test_split_file_is_the_single_machine_bytes_with_fixed_randomness(tmp_path, monkeypatch):
    """Node keys and the metadata nonce are random; with the random source fixed (zeros), a file
    encrypted in pieces on several workers is byte for byte what encrypt_stream writes."""
    from pal import HostFile
    from pfs import stream

    monkeypatch.setattr(stream, "random_bytes", lambda n: bytes(n))
    monkeypatch.setattr(stream, "new_nonce", lambda: bytes(32))
    src = tmp_path / "src" / "f.bin"
    _write_random(src, 9 * MIB + 777, seed=5)
    ref = tmp_path / "ref.enc"
    with HostFile(src) as s, HostFile(ref, writable=True, create=True) as d:
        stream.encrypt_stream(s, d, KEY, "/data/f.bin")
    with _cluster(3, processes=False) as cluster, Client(cluster) as c:
        result = pdask.encrypt_tree(str(src), str(tmp_path / "out.enc"), key=KEY, client=c,
                                    bind_prefix="/data", split_size=1 * MIB)
    assert result.ok, result.failed
    assert (tmp_path / "out.enc").read_bytes() == ref.read_bytes()
    # and with real randomness again the bytes differ, the plaintext does not
    monkeypatch.undo()
    with _cluster(2, processes=False) as cluster, Client(cluster) as c:
        pdask.encrypt_tree(str(src), str(tmp_path / "again.enc"), key=KEY, client=c, bind_prefix="/data",
                           split_size=1 * MIB)
    assert (tmp_path / "again.enc").read_bytes() != ref.read_bytes()


def _scheduler_state(dask_scheduler) -> list[bytes]:
    out = []
    for ts in dask_scheduler.tasks.values():
        out.append(str(ts.key).encode())
        out.append(repr(ts.run_spec).encode())
        with contextlib.suppress(Exception):
            out.append(pickle.dumps(ts.run_spec))
    return out


def test_keys_stay_out_of_tasks_results_logs_and_disks(client, tmp_path):
    src = tmp_path / "src"
    _small_tree(src, 30)
    _write_random(src / "big.bin", 5 * MIB, seed=9)
    key = os.urandom(16)
    states: list[bytes] = []

    def snapshot(_n: int) -> None:
        states.extend(client.run_on_scheduler(_scheduler_state))

    result = pdask.encrypt_tree(str(src), str(tmp_path / "enc"), key=key, client=client, split_size=1 * MIB,
                                progress=snapshot)
    assert result.ok
    assert any(b"split_piece" in s for s in states)  # the snapshots saw the job's tasks
    needles = (key, key.hex().encode(), key.hex().upper().encode())
    for blob in states:
        assert not any(n in blob for n in needles)
    logs = repr(client.get_worker_logs()) + repr(client.get_scheduler_logs())
    assert key.hex() not in logs and repr(key) not in logs
    # dropped from the workers' memory when the job ends
    assert all(not keys for keys in client.run(lambda: dict(dask_tasks._KEYS)).values())
    # nothing on the workers' disks holds it
    for folder in client.run(lambda dask_worker: dask_worker.local_directory).values():
        for path in Path(folder).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(n in data for n in needles), path


def test_bad_file_among_good_ones(client, tmp_path):
    src, enc, dec = tmp_path / "src", tmp_path / "enc", tmp_path / "dec"
    _small_tree(src, 19)
    _write_random(src / "d3" / "victim.bin", 400000, seed=2)
    assert pdask.encrypt_tree(str(src), str(enc), key=KEY, client=client).ok
    victim = enc / "d3" / "victim.bin"
    data = bytearray(victim.read_bytes())
    data[40 * 4096 + 100] ^= 1
    victim.write_bytes(bytes(data))
    result = pdask.decrypt_tree(str(enc), str(dec), key=KEY, client=client)
    assert [f.job.src for f in result.failed] == [str(victim)]
    assert "corrupted node" in result.failed[0].error and str(victim) in result.failed[0].error
    assert len([f for f in result.files if f.ok]) == 19
    assert not (dec / "d3" / "victim.bin").exists()
    _no_temps(dec)
    # the command: the same, one BAD line, exit status 1
    key_file = _key_file(tmp_path)
    out = _pfs("verify", "-w", str(key_file), "--dask", "-j", "2", str(enc), check=False)
    assert out.returncode == 1
    bad = [line for line in out.stdout.splitlines() if line.startswith("BAD")]
    assert len(bad) == 1 and str(victim) in bad[0] and "corrupted node" in bad[0]
    assert "19 files ok, 1 bad" in out.stdout


def test_large_files_decrypted_and_verified_in_pieces(client, tmp_path):
    """Above the split size, decrypt and verify run a file's node groups on several workers: the
    plaintext is the same, a bad node anywhere fails the file (no output, no temporary file), a
    wrong bound path fails it before anything is written."""
    src, enc = tmp_path / "src", tmp_path / "enc"
    _write_random(src / "a.bin", 30 * MIB + 5, seed=21)
    _write_random(src / "b.bin", 30 * MIB + 6, seed=22)
    assert pdask.encrypt_tree(str(src), str(enc), key=KEY, client=client, bind_prefix="/p").ok
    with get_task_stream(client) as stream:
        good = pdask.decrypt_tree(str(enc), str(tmp_path / "dec"), key=KEY, client=client, bind_prefix="/p",
                                  split_size=4 * MIB)
    assert good.ok, good.failed
    pieces = [t for t in stream.data if "split_open_piece" in str(t["key"])]
    assert len(pieces) >= 4 and len({t["worker"] for t in pieces}) == 2  # 30 MiB: 2 runs of 64 groups
    _same_tree(src, tmp_path / "dec")
    victim = enc / "b.bin"
    data = bytearray(victim.read_bytes())
    data[len(data) - 5 * 4096 + 7] ^= 1  # a data node near the end: the last piece's
    victim.write_bytes(bytes(data))
    for run in (lambda: pdask.decrypt_tree(str(enc), str(tmp_path / "dec2"), key=KEY, client=client,
                                           split_size=4 * MIB),
                lambda: pdask.verify_tree(str(enc), key=KEY, client=client, split_size=4 * MIB)):
        result = run()
        assert [f.job.src for f in result.failed] == [str(victim)]
        assert "corrupted node" in result.failed[0].error
    assert not (tmp_path / "dec2" / "b.bin").exists() and (tmp_path / "dec2" / "a.bin").exists()
    _no_temps(tmp_path / "dec2")
    wrong = pdask.decrypt_tree(str(enc / "a.bin"), str(tmp_path / "a.out"), key=KEY, client=client,
                               bind_prefix="/elsewhere", split_size=4 * MIB)
    assert not wrong.ok and "/elsewhere/a.bin" in wrong.failed[0].error and "/p/a.bin" in wrong.failed[0].error
    assert not (tmp_path / "a.out").exists()
    _no_temps(tmp_path)


def test_large_files_cut_only_when_the_others_cant_keep_the_workers_busy(client, tmp_path):
    """Above the split size, a file is cut into pieces when it is more than half a worker's share
    of the job: 6 files of 26 MiB on 2 workers are encrypted whole (each is 1/6 of the job), one
    alone (or with small files) in pieces; the outputs are the same files either way."""
    src = tmp_path / "src"
    for i in range(6):
        _write_random(src / f"big{i}.bin", 26 * MIB + i, seed=40 + i)
    _small_tree(src / "small", 20, seed=5)
    with get_task_stream(client) as stream:
        many = pdask.encrypt_tree(str(src), str(tmp_path / "many"), key=KEY, client=client, split_size=1 * MIB)
    assert many.ok, many.failed
    assert not [t for t in stream.data if "split_piece" in str(t["key"])]
    assert len([t for t in stream.data if "encrypt_file" in str(t["key"])]) == 6
    alone = tmp_path / "alone"
    _small_tree(alone / "small", 20, seed=5)
    (alone / "big0.bin").write_bytes((src / "big0.bin").read_bytes())
    with get_task_stream(client) as stream:
        one = pdask.encrypt_tree(str(alone), str(tmp_path / "one"), key=KEY, client=client, split_size=1 * MIB)
    assert one.ok, one.failed
    assert len([t for t in stream.data if "split_piece" in str(t["key"])]) == 2  # 26 MiB: 2 runs of 64 groups
    for name in ("many", "one"):
        dec = pdask.decrypt_tree(str(tmp_path / name), str(tmp_path / f"{name}.dec"), key=KEY, client=client)
        assert dec.ok, dec.failed
    assert (tmp_path / "one.dec" / "big0.bin").read_bytes() == (tmp_path / "many.dec" / "big0.bin").read_bytes() \
        == (src / "big0.bin").read_bytes()
    _same_tree(src, tmp_path / "many.dec")


@pytest.fixture
def own_dask_config(monkeypatch):
    """``tools.dask_run.local_cluster`` sets the process's Dask config (the command's process
    runs one job): a copy for the test, restored after it."""
    import copy

    import dask

    monkeypatch.setattr(dask.config, "config", copy.deepcopy(dask.config.config))


@pytest.mark.parametrize("start", ["spawned", "forked (--dask)"])
def test_worker_killed_in_the_middle(tmp_path, start, own_dask_config):
    """SIGKILL of a worker process mid-job: the job still completes (or files fail cleanly);
    no output is half-written in place, no temporary file is left. Both a cluster of spawned
    workers and the forked ones of ``--dask`` (the nanny forks the new worker mid-job)."""
    from tools.dask_run import local_cluster

    src, enc = tmp_path / "src", tmp_path / "enc"
    _small_tree(src, 60, seed=3)
    _write_random(src / "big.bin", 96 * MIB, seed=7)
    with _cluster(2) if start == "spawned" else local_cluster(2) as cluster, Client(cluster) as c:
        pids = c.run(os.getpid)
        first_done = threading.Event()
        box: dict = {}

        def job() -> None:
            box["result"] = pdask.encrypt_tree(str(src), str(enc), key=KEY, client=c, split_size=8 * MIB,
                                               progress=lambda _n: first_done.set())

        thread = threading.Thread(target=job)
        thread.start()
        assert first_done.wait(120)
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        thread.join(300)
        assert not thread.is_alive()
    result = box["result"]
    assert len(result.files) == 61
    key_file = _key_file(tmp_path)
    for outcome in result.files:
        dst = Path(outcome.job.dst)
        if outcome.ok:
            out = tmp_path / "check.bin"
            _pfs("decrypt", "-w", str(key_file), "-q", "--force", "-i", str(dst), "-o", str(out))
            assert out.read_bytes() == Path(outcome.job.src).read_bytes()
        else:
            assert not dst.exists()
    assert result.ok  # distributed re-ran the lost tasks; keys were sent to the new worker
    _no_temps(enc)


# evaluated on the workers by the builtin eval (a function of this module would import it, and
# with it pfs, on a spawned worker)
_WARM = "{'distributed', 'pfs.dask_split', 'pfs.stream', 'pal'} <= __import__('sys').modules.keys()"


def test_dask_option_workers_start_warm(own_dask_config):
    """``--dask``'s local cluster forks its workers: they start with distributed and the task
    modules already imported (spawned workers import them again, ~0.4 s at each start, and the
    first tasks import the rest) and have no profiler; a worker killed is
    replaced by a forked one."""
    from tools.dask_run import local_cluster

    with local_cluster(2) as cluster, Client(cluster) as c:
        warm = c.run(eval, _WARM)
        assert warm and list(warm.values()) == [True, True], warm
        assert c.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks) == dict.fromkeys(warm, False)
        pid = next(iter(c.run(os.getpid).values()))
        os.kill(pid, signal.SIGKILL)
        import time

        deadline = time.monotonic() + 60
        while pid in (pids := c.run(os.getpid, on_error="ignore")).values() or len(pids) < 2:
            assert time.monotonic() < deadline, pids
            time.sleep(0.1)
        assert list(c.run(eval, _WARM).values()) == [True, True]
    import dask

    # the contrast: a spawned worker (Dask's default) starts cold
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}), _cluster(1) as cluster, \
            Client(cluster) as c:
        assert list(c.run(eval, _WARM).values()) == [False]


def test_workers_that_lost_the_keys_get_them_again(client, tmp_path):
    """A worker that joins or restarts mid-job has no keys: its tasks fail with KeyNotOnWorker,
    the keys are sent again and the files re-submitted (here every worker forgets them when the
    first file is done)."""
    from fsspec.implementations.local import LocalFileSystem

    src = tmp_path / "src"
    _small_tree(src, 80, seed=6)
    _write_random(src / "big.bin", 12 * MIB, seed=1)
    local = LocalFileSystem()
    jobs = [pdask.Job("encrypt", local, str(p), local, str(tmp_path / "enc" / p.relative_to(src)), "/b",
                      p.stat().st_size) for p in sorted(src.rglob("*")) if p.is_file()]
    forgotten = []

    def forget(_n: int) -> None:
        if not forgotten:
            forgotten.append(client.run(lambda: dask_tasks._KEYS.clear()))

    stats: dict[str, int] = {}
    outcomes = list(pdask.run_jobs(client, jobs, {"key": KEY}, split_size=4 * MIB, progress=forget, stats=stats))
    assert forgotten and stats.get("key_resends", 0) >= 1
    assert len(outcomes) == len(jobs) and all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
    key_file = _key_file(tmp_path)
    assert _pfs("verify", "-w", str(key_file), str(tmp_path / "enc")).stdout.strip() == f"{len(jobs)} files ok"
    _no_temps(tmp_path / "enc")


def test_memory_to_file_and_back(tmp_path):
    """Plaintext in one store (memory://), encrypted files in another (file://), and back."""
    import fsspec

    mem = fsspec.filesystem("memory")
    rng = random.Random(11)
    plain = {f"/pfsdask/in/x{i}/y{i}.csv": rng.randbytes(rng.randrange(0, 300000)) for i in range(12)}
    for path, data in plain.items():
        mem.pipe_file(path, data)
    enc = tmp_path / "enc"
    with _cluster(2, processes=False) as cluster, Client(cluster) as c:
        assert pdask.encrypt_tree("memory://pfsdask/in", enc.as_uri(), key=KEY, client=c, bind_prefix="/d").ok
        key_file = _key_file(tmp_path)
        assert _pfs("verify", "-w", str(key_file), "--bind-prefix", "/d", str(enc)).stdout.strip() == "12 files ok"
        back = pdask.decrypt_tree(enc.as_uri(), "memory://pfsdask/out", key=KEY, client=c, bind_prefix="/d")
        assert back.ok, back.failed
        # and an encrypted tree in memory://, verified and re-keyed there
        assert pdask.encrypt_tree("memory://pfsdask/in", "memory://pfsdask/enc", key=KEY, client=c).ok
        new = os.urandom(16)
        assert pdask.rekey_tree("memory://pfsdask/enc", key=KEY, new_key=new, client=c).ok
        assert pdask.verify_tree("memory://pfsdask/enc", key=new, client=c, verify_path=True).ok
        assert not pdask.verify_tree("memory://pfsdask/enc", key=KEY, client=c).ok
    for path, data in plain.items():
        assert mem.cat_file(path.replace("/in/", "/out/")) == data
    mem.rm("/pfsdask", recursive=True)


def test_cli_same_outputs_as_without_dask(tmp_path):
    src = tmp_path / "src"
    _small_tree(src, 25, seed=4)
    _write_random(src / "big.bin", 70 * MIB, seed=8)  # above the split size
    (src / "ro.bin").write_bytes(b"x" * 5000)
    (src / "ro.bin").chmod(0o640)
    key_file = _key_file(tmp_path)
    new_key = _key_file(tmp_path, os.urandom(16), "new.key")
    a, b = tmp_path / "a", tmp_path / "b"
    out_a = _pfs("encrypt", "-w", str(key_file), "-i", str(src), "-o", str(a), "--bind-prefix", "/p", "-j", "2")
    out_b = _pfs("encrypt", "-w", str(key_file), "-i", str(src), "-o", str(b), "--bind-prefix", "/p", "--dask",
                 "-j", "2")
    assert sorted(out_a.stdout.replace(str(a), "X").splitlines()) == \
        sorted(out_b.stdout.replace(str(b), "X").splitlines())
    for p in a.rglob("*"):
        q = b / p.relative_to(a)
        assert q.stat().st_size == p.stat().st_size and q.stat().st_mode == p.stat().st_mode, q
    _pfs("rekey", "-w", str(key_file), "--new-key", str(new_key), "--dask", "-q", str(b))
    assert _pfs("verify", "-w", str(new_key), "--bind-prefix", "/p", str(b)).returncode == 0
    d = tmp_path / "d"
    _pfs("decrypt", "-w", str(new_key), "-i", str(b), "-o", str(d), "--dask", "-q", "--bind-prefix", "/p")
    _same_tree(src, d)
    assert (d / "ro.bin").stat().st_mode & 0o777 == 0o640
    # existing outputs are refused without --force, as without --dask
    again = _pfs("decrypt", "-w", str(new_key), "-i", str(b), "-o", str(d), "--dask", "-q", check=False)
    assert again.returncode == 1 and "already exists" in again.stderr
    _same_tree(src, d)


def test_cli_errors(tmp_path):
    key_file = _key_file(tmp_path)
    (tmp_path / "f").write_bytes(b"abc")
    out = _pfs("encrypt", "-w", str(key_file), "-i", str(tmp_path / "f"), "-o", str(tmp_path / "g"),
               "--scheduler", "tcp://127.0.0.1:9", check=False)
    assert out.returncode == 1
    assert out.stderr.startswith("pfs: error: can't reach the Dask scheduler at 'tcp://127.0.0.1:9'")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert not (tmp_path / "g").exists()
    out = _pfs("encrypt", "-w", str(key_file), "-i", "-", "-o", str(tmp_path / "g"), "--bind-path", "/x", "--dask",
               check=False)
    assert out.returncode == 2 and "standard input" in out.stderr
    out = _pfs("verify", "-w", str(key_file), "--dask", "--scheduler", "tcp://x:1", str(tmp_path / "f"),
               check=False)
    assert out.returncode == 2 and "not both" in out.stderr
    # without Dask installed: what to install
    code = ("import sys; sys.modules['distributed'] = None; from tools.pfs_cli import main; "
            f"sys.argv = ['pfs', 'verify', '-w', {str(key_file)!r}, '--dask', {str(tmp_path / 'f')!r}]; main()")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 1
    assert "pip install 'pfskit[data]'" in out.stderr and "Traceback" not in out.stderr


def test_importing_pfs_dask_imports_no_dask():
    """The API module is light: Dask and fsspec are imported when a job runs."""
    code = ("import sys, pfs, pfs.dask, tools.pfs_cli; "
            "print(sorted(m for m in ('dask', 'distributed', 'fsspec', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
