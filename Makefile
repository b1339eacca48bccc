.PHONY: demo test test-lowlevel setup lint bench bench-data bench-gramine bench-vfs bench-fuse bench-fuse-api bench-run bench-startup bench-mechanisms bench-sign bench-dask clean

demo: setup
	scripts/demo.sh

setup: .venv/.installed

.venv/.installed: pyproject.toml scripts/setup.sh
	scripts/setup.sh

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q
	$(MAKE) --no-print-directory test-lowlevel

# the FUSE suite again, every mount served by the inode-based low-level bridge (vfs/fuse_lowlevel.py)
test-lowlevel: setup
	PFSKIT_FUSE_API=lowlevel .venv/bin/python -m pytest -q tests/test_fuse.py tests/test_fuse_linux.py \
		tests/test_fuse_limits.py

lint:
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python bench/bench_pfs.py

# needs Gramine's sources: GRAMINE_SRC=DIR (a checkout or a git repository), libmbedtls-dev, uthash-dev
bench-gramine: setup
	.venv/bin/python bench/bench_gramine.py

bench-vfs: setup
	.venv/bin/python bench/bench_vfs.py

bench-fuse: setup
	.venv/bin/python bench/bench_fuse.py --repeat 3

# libos mount's two FUSE bridges against each other (mfusepy's path API, libfuse's low-level API)
bench-fuse-api: setup
	.venv/bin/python bench/bench_fuse_api.py --repeat 2

# libos run against native, bwrap and proot (as root; QUICK=1: a minute or so)
bench-run: setup
	.venv/bin/python bench/bench_run.py $(if $(QUICK),--quick)

# the three mechanisms of issue 9 (libos run, seccomp notification, ptrace) against native (as
# root, x86_64; gcc compiles bench/mechanisms/ into a temp folder; QUICK=1: a minute or so)
bench-mechanisms: setup
	.venv/bin/python bench/bench_mechanisms.py $(if $(QUICK),--quick)

# libos sign of all of /usr/lib/python3* against find | xargs sha256sum
bench-sign: setup
	.venv/bin/python bench/bench_sign.py --repeat 5 --json docs/bench-sign.json

# pfs encrypt --dask --jobs 2 of a 2 GiB tree against pfs encrypt --jobs 2; 1, 2, 4 local workers (needs .[data])
bench-dask: setup
	.venv/bin/python bench/bench_dask.py --json docs/bench-dask.json

# pd.read_csv / pd.read_parquet of 200 MB files through pfs:: against the plaintext files (QUICK=1: 40 MB)
bench-data: setup
	.venv/bin/python bench/bench_data.py $(if $(QUICK),--quick)

bench-startup: setup
	.venv/bin/python bench/bench_startup.py --imports

clean:
	rm -rf demo-out .pytest_cache .ruff_cache .hypothesis
