"""pandas, pyarrow and Dask over the ``pfs`` fsspec file system, on real files: every result equals
the same call on the plaintext (files encrypted by ``pfs encrypt``, or written through ``pfs::``
and read back; ``pfs decrypt`` reads what Dask wrote)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import require

for _module in ("fsspec", "pandas", "pyarrow", "dask", "distributed"):
    require(importlib.util.find_spec(_module), f"{_module} is not installed (pip install -e '.[data]')")

import fsspec  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PFS = [sys.executable, "-m", "tools.pfs_cli"]


def run_pfs(*args: str) -> None:
    out = subprocess.run([*PFS, *args], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": np.arange(rows, dtype=np.int64) + seed * rows,
        "value": rng.normal(size=rows),
        "count": rng.integers(0, 1000, size=rows),
        "label": rng.choice(["alpha", "beta", "gamma, with a comma", 'quote "q"'], size=rows),
        "when": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 10**6, size=rows), unit="s"),
    })


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Plaintext CSV and Parquet files, encrypted by ``pfs encrypt`` into enc/ (bound to /data/...)."""
    base = tmp_path_factory.mktemp("frames")
    key_file = base / "wrap.key"
    run_pfs("gen-key", "-w", str(key_file))
    plain = base / "plain"
    plain.mkdir()
    for i in range(3):
        df = frame(20_000, i)
        df.to_csv(plain / f"part{i}.csv", index=False)
        df.to_parquet(plain / f"part{i}.parquet", row_group_size=5000)
    run_pfs("encrypt", "-q", "-w", str(key_file), "-i", str(plain), "-o", str(base / "enc"), "--bind-prefix", "/data")
    opts = {"key_file": str(key_file), "bind_prefix": "/data"}
    return {"base": base, "plain": plain, "enc": base / "enc", "key_file": key_file, "opts": opts}


@pytest.fixture(autouse=True)
def _fresh_instances():
    yield
    fsspec.filesystem("memory").store.clear()


def test_pandas_reads_equal_plaintext(data):
    so = {"pfs": data["opts"]}
    for i in range(3):
        want_csv = pd.read_csv(data["plain"] / f"part{i}.csv")
        got_csv = pd.read_csv(f"pfs::file://{data['enc']}/part{i}.csv", storage_options=so)
        pd.testing.assert_frame_equal(got_csv, want_csv)
        want_pq = pd.read_parquet(data["plain"] / f"part{i}.parquet", columns=["id", "label"])
        got_pq = pd.read_parquet(f"pfs::file://{data['enc']}/part{i}.parquet", columns=["id", "label"],
                                 storage_options=so)
        pd.testing.assert_frame_equal(got_pq, want_pq)


@pytest.mark.parametrize("target", ["file", "memory"])
def test_pandas_writes_read_back_equal(data, tmp_path: Path, target: str):
    df = frame(30_000, 7)
    root = f"file://{tmp_path}" if target == "file" else "memory://out"
    so = {"pfs": {"key_file": str(data["key_file"]), "bind_prefix": "/data"}}
    df.to_csv(f"pfs::{root}/t.csv", index=False, storage_options=so)
    df.to_parquet(f"pfs::{root}/t.parquet", storage_options=so)
    df.to_csv(tmp_path / "plain.csv", index=False)
    df.to_parquet(tmp_path / "plain.parquet")
    pd.testing.assert_frame_equal(pd.read_csv(f"pfs::{root}/t.csv", storage_options=so),
                                  pd.read_csv(tmp_path / "plain.csv"))
    pd.testing.assert_frame_equal(pd.read_parquet(f"pfs::{root}/t.parquet", storage_options=so),
                                  pd.read_parquet(tmp_path / "plain.parquet"))
    if target == "file":  # the command decrypts what pandas wrote: the plaintext CSV, byte for byte
        run_pfs("decrypt", "-q", "-w", str(data["key_file"]), "--expect-path", "/data/t.csv",
                "-i", str(tmp_path / "t.csv"), "-o", str(tmp_path / "d.csv"))
        assert (tmp_path / "d.csv").read_bytes() == (tmp_path / "plain.csv").read_bytes()


def test_pyarrow_dataset_over_the_file_system(data):
    import pyarrow.dataset as ds

    from pfs.fsspec_fs import PfsFileSystem

    fs = PfsFileSystem(target_protocol="file", root=str(data["enc"]), **data["opts"])
    enc = ds.dataset(fs.glob(f"{data['enc']}/*.parquet"), filesystem=fs, format="parquet")
    plain = ds.dataset(sorted(str(p) for p in data["plain"].glob("*.parquet")), format="parquet")
    assert sorted(f.rsplit("/", 1)[1] for f in enc.files) == sorted(f.rsplit("/", 1)[1] for f in plain.files)
    query = {"columns": ["id", "value", "label"], "filter": ds.field("count") > 900}
    got = enc.to_table(**query).to_pandas().sort_values("id", ignore_index=True)
    want = plain.to_table(**query).to_pandas().sort_values("id", ignore_index=True)
    assert len(want) > 1000
    pd.testing.assert_frame_equal(got, want)


def test_dask_dataframes_on_a_process_cluster(data, tmp_path: Path):
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    so = {"pfs": data["opts"]}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster):
        got = dd.read_csv(f"pfs::file://{data['enc']}/*.csv", storage_options=so, blocksize=300_000)
        assert got.npartitions > 3  # files split in ranges: random reads on the workers
        want = dd.read_csv(f"{data['plain']}/*.csv", blocksize=300_000)
        pd.testing.assert_frame_equal(got.compute().reset_index(drop=True), want.compute().reset_index(drop=True))
        pq = dd.read_parquet(f"pfs::file://{data['enc']}/*.parquet", storage_options=so)
        pd.testing.assert_frame_equal(pq.compute().reset_index(drop=True),
                                      dd.read_parquet(f"{data['plain']}/*.parquet").compute().reset_index(drop=True))
        out = {"pfs": {"key_file": str(data["key_file"]), "bind_prefix": "/out", "root": str(tmp_path / "out")}}
        got.to_parquet(f"pfs::file://{tmp_path}/out", storage_options=out, write_index=False)
        back = dd.read_parquet(f"pfs::file://{tmp_path}/out", storage_options=out).compute()
        pd.testing.assert_frame_equal(back.reset_index(drop=True), want.compute().reset_index(drop=True))
    parts = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert parts and all(p.endswith(".parquet") for p in parts)
    # each part is a Gramine protected file bound to /out/<name>: pfs decrypt checks it
    run_pfs("decrypt", "-q", "-w", str(data["key_file"]), "--bind-prefix", "/out", "-i", str(tmp_path / "out"),
            "-o", str(tmp_path / "out-plain"))
    assert pd.read_parquet(tmp_path / "out-plain").shape == want.compute().shape
