"""``libos.loader``: what ``libos run`` starts from a manifest (Gramine's argv/env/uid rules) and
which mounts become host bind mounts."""

from __future__ import annotations

import pytest

from libos.loader import UsageError, launch_plan, mount_plan, unsupported_keys
from libos.manifest import ManifestError, loads_manifest


def m(text: str, env: dict[str, str] | None = None):
    return loads_manifest(text, base_dir="/app", host_env=env or {})


def test_argv_is_the_entry_point_alone_by_default():
    plan = launch_plan(m('libos.entrypoint = "/bin/prog"'), [])
    assert (plan.exe, plan.argv, plan.cwd, plan.uid, plan.gid) == ("/bin/prog", ["/bin/prog"], "/", 0, 0)


def test_command_line_arguments_need_the_insecure_key():
    with pytest.raises(UsageError, match="insecure__use_cmdline_argv"):
        launch_plan(m('libos.entrypoint = "/bin/prog"'), ["-x"])
    with pytest.raises(UsageError):
        launch_plan(m('libos.entrypoint = "/bin/prog"\nloader.argv = ["prog"]'), ["-x"])
    plan = launch_plan(m('libos.entrypoint = "/bin/prog"\nloader.insecure__use_cmdline_argv = true'), ["-c", "1"])
    assert plan.argv == ["/bin/prog", "-c", "1"]


def test_loader_argv_and_argv0_override():
    plan = launch_plan(m('libos.entrypoint = "/bin/prog"\nloader.argv = ["p", "a"]\nloader.argv0_override = "q"'), [])
    assert plan.argv == ["q", "a"]


@pytest.mark.parametrize("extra", ['loader.argv = ["p"]\nloader.insecure__use_cmdline_argv = true',
                                   'loader.argv = ["p"]\nloader.argv_src_file = "file:a"'])
def test_argv_sources_are_mutually_exclusive(extra):
    with pytest.raises(ManifestError, match="mutually exclusive"):
        launch_plan(m(f'libos.entrypoint = "/bin/prog"\n{extra}'), [])


def test_missing_entry_point_names_the_key():
    with pytest.raises(ManifestError, match=r"^libos\.entrypoint: missing"):
        launch_plan(m('loader.argv = ["p"]'), [])


def test_env_cwd_uid_gid_limits():
    text = ('libos.entrypoint = "prog"\nfs.start_dir = "/srv"\nloader.uid = 7\nloader.gid = 8\n'
            'loader.env.A = "1"\nloader.env.B = { passthrough = true }\nloader.env.C = { passthrough = true }\n'
            'sys.fds.limit = 100\nsys.stack.size = "2M"\nloader.insecure__disable_aslr = true')
    plan = launch_plan(m(text, {"B": "host", "D": "hidden"}), [])
    assert plan.env == {"A": "1", "B": "host"}
    assert (plan.exe, plan.cwd, plan.uid, plan.gid) == ("/srv/prog", "/srv", 7, 8)
    assert (plan.nofile, plan.stack, plan.no_aslr) == (100, 2 << 20, True)
    host = launch_plan(m('libos.entrypoint = "/p"\nloader.insecure__use_host_env = true\nloader.env.A = "x"',
                         {"A": "host", "D": "d"}), [])
    assert host.env == {"A": "x", "D": "d"}


def test_unsupported_keys_one_line_each_sgx_on_one():
    text = ('libos.entrypoint = "/p"\nloader.preload = "file:x"\nsys.disallow_subprocesses = false\n'
            'sgx.enclave_size = "1G"\nsgx.debug = true\nsgx.file_check_policy = "strict"')
    assert unsupported_keys(m(text)) == [
        "loader.preload: not implemented by libos run (preloaded libraries are not loaded)",
        "sgx.debug, sgx.enclave_size: SGX settings, not used without SGX (as in gramine-direct)"]


def test_mount_plan_binds_only_unchecked_chroot_mounts_without_nested_ones():
    base = ('fs.mounts = [{ path = "/usr", uri = "file:/usr" }, { path = "/opt", uri = "file:/opt" },\n'
            '  { type = "tmpfs", path = "/opt/t" }, { type = "encrypted", path = "/data", uri = "file:enc/" }]\n')
    binds, served = mount_plan(m(base))
    assert [s.path for s in binds] == ["/usr"]
    assert [s.path for s in served] == ["/opt", "/opt/t", "/data"]
    trusted = base + 'sgx.trusted_files = ["file:/usr/bin/python3"]\n'
    assert mount_plan(m(trusted))[0] == []
    # every file under /usr allowed, the trusted one elsewhere: /usr needs no check
    allowed = base + 'sgx.trusted_files = ["file:/etc/x"]\nsgx.allowed_files = ["file:/usr/"]\n'
    assert [s.path for s in mount_plan(m(allowed))[0]] == ["/usr"]
    policy = base + 'sgx.file_check_policy = "allow_all_but_log"\n'
    assert mount_plan(m(policy))[0] == []
