"""Host-side checks of tests/vm/run's pieces that need no VM: kernel look-up, tree fix-ups, command, report."""

import importlib.machinery
import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).parent / "vm" / "run"


@pytest.fixture(scope="module")
def vm_run():
    loader = importlib.machinery.SourceFileLoader("vm_run", str(RUN))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("vm_run", loader))
    loader.exec_module(module)
    return module


class FakeApt:
    """Control fields as `apt-cache show --no-all-versions` gave them for the two suites."""

    FIELDS = {
        # bookworm (6.1.192-2)
        ("linux-image-amd64", "Depends"): "linux-image-6.1.0-56-amd64 (= 6.1.192-2)",
        ("linux-image-6.1.0-56-amd64", "Version"): "6.1.192-2",
        ("linux-headers-6.1.0-56-amd64", "Depends"):
            "linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86",
        # bookworm-backports (6.12.95-1~bpo12+1)
        ("linux-image-6.12.95+deb12-amd64", "Version"): "6.12.95-1~bpo12+1",
        ("linux-headers-6.12.95+deb12-amd64", "Depends"):
            "linux-base (>= 4.12~), linux-headers-6.12.95+deb12-common (= 6.12.95-1~bpo12+1), "
            "linux-image-6.12.95+deb12-amd64 (= 6.12.95-1~bpo12+1) | "
            "linux-image-6.12.95+deb12-amd64-unsigned (= 6.12.95-1~bpo12+1), linux-kbuild-6.12.95+deb12, gcc-12",
    }

    def __init__(self, image_dep):
        self.image_dep = image_dep

    def field(self, pkg, name):
        if (pkg, name) == ("linux-image-amd64", "Depends"):
            return self.image_dep
        return self.FIELDS[(pkg, name)]


def test_current_kernel_bookworm(vm_run):
    abi, version, pkgs = vm_run.current_kernel(FakeApt("linux-image-6.1.0-56-amd64 (= 6.1.192-2)"))
    assert (abi, version) == ("6.1.0-56-amd64", "6.1.192-2")
    assert pkgs == ["linux-image-6.1.0-56-amd64", "linux-headers-6.1.0-56-amd64",
                    "linux-headers-6.1.0-56-common", "linux-kbuild-6.1"]


def test_current_kernel_backports(vm_run):
    abi, version, pkgs = vm_run.current_kernel(FakeApt("linux-image-6.12.95+deb12-amd64 (= 6.12.95-1~bpo12+1)"))
    assert (abi, version) == ("6.12.95+deb12-amd64", "6.12.95-1~bpo12+1")
    assert pkgs == ["linux-image-6.12.95+deb12-amd64", "linux-headers-6.12.95+deb12-amd64",
                    "linux-headers-6.12.95+deb12-common", "linux-kbuild-6.12.95+deb12"]


def test_current_kernel_refuses_an_unknown_shape(vm_run):
    with pytest.raises(RuntimeError, match="cannot find the kernel"):
        vm_run.current_kernel(FakeApt("linux-image-cloud-amd64"))


def write(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_merge_trees_puts_arch_over_common_with_relative_links(vm_run, tmp_path):
    cache = tmp_path / "cache"
    common, arch, dst = cache / "common", cache / "arch", cache / "merged"
    write(common / "include" / "linux" / "kconfig.h", "common kconfig")
    write(common / "include" / "generated" / "x.h", "common x")
    write(common / "Makefile", "common makefile")
    write(arch / "include" / "generated" / "x.h", "arch x")
    write(arch / "include" / "generated" / "autoconf.h", "arch autoconf")
    write(arch / "Makefile", "arch makefile")
    vm_run.merge_trees(common, arch, dst)
    assert (dst / "include" / "linux" / "kconfig.h").read_text() == "common kconfig"
    assert (dst / "include" / "generated" / "x.h").read_text() == "arch x"
    assert (dst / "include" / "generated" / "autoconf.h").read_text() == "arch autoconf"
    assert (dst / "Makefile").read_text() == "arch makefile"
    assert (dst / "include").is_dir() and not (dst / "include").is_symlink()  # both had it: merged
    assert (dst / "include" / "linux").is_symlink()  # only common had it: one link
    links = [p for p in dst.rglob("*") if p.is_symlink()]
    assert links and all(not os.path.isabs(os.readlink(p)) for p in links)
    # Relative links keep working when the whole cache moves.
    moved = cache.rename(tmp_path / "moved")
    assert (moved / "merged" / "include" / "generated" / "x.h").read_text() == "arch x"


def test_relink_absolute_points_inside_the_tree(vm_run, tmp_path):
    root = tmp_path / "root"
    write(root / "usr" / "src" / "linux-headers-X-amd64" / "Makefile", "m")
    build = root / "lib" / "modules" / "X" / "build"
    build.parent.mkdir(parents=True)
    build.symlink_to("/usr/src/linux-headers-X-amd64")
    outside = root / "lib" / "modules" / "X" / "elsewhere"
    outside.symlink_to("/nonexistent/thing")
    vm_run.relink_absolute(root)
    assert os.readlink(build) == "../../../usr/src/linux-headers-X-amd64"
    assert (build / "Makefile").read_text() == "m"
    assert os.readlink(outside) == "/nonexistent/thing"  # nothing inside the tree to point at: left alone


def test_relative_include_lets_make_find_the_common_makefile(vm_run, tmp_path):
    src = tmp_path / "usr" / "src"
    write(src / "linux-headers-X-common" / "Makefile", "all:\n\t@echo common-ok\n")
    arch_mk = src / "linux-headers-X-amd64" / "Makefile"
    write(arch_mk, "include /usr/src/linux-headers-X-common/Makefile\n")
    vm_run.relative_include(arch_mk)
    out = subprocess.run(["make", "-s", "-C", str(arch_mk.parent)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "common-ok"


def test_guest_command(vm_run, tmp_path):
    assert vm_run.guest_command([], tmp_path) == \
        f".venv/bin/pytest -m 'vm and not one_node and not known_failing' -q --junitxml={tmp_path}/junit.xml"
    assert vm_run.guest_command([], tmp_path, nodes=1) == \
        f".venv/bin/pytest -m 'vm and one_node' -q --junitxml={tmp_path}/junit.xml"
    assert vm_run.guest_command(["uname -r; ls /x"], tmp_path) == "uname -r; ls /x"
    assert vm_run.guest_command(["ls", "a b"], tmp_path) == "ls 'a b'"


def test_junit_summary_counts_and_names_failures(vm_run, tmp_path, capsys):
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="0" tests="3" time="2.5">'
        '<testcase classname="tests.test_vm_guest" name="test_a" time="1"/>'
        '<testcase classname="tests.test_vm_guest" name="test_b" time="1">'
        '<failure message="AssertionError: no DAMON sysfs&#10;more">tb</failure></testcase>'
        '<testcase classname="tests.test_vm_guest" name="test_c" time="0.5"/>'
        '</testsuite></testsuites>')
    vm_run.junit_summary(junit)
    out = capsys.readouterr().out
    assert "FAILURE tests.test_vm_guest::test_b: AssertionError: no DAMON sysfs\n" in out
    assert out.endswith("\njunit: 2 passed, 1 failed, 0 skipped\n")


def test_help_names_the_kernels():
    out = subprocess.run([str(RUN), "--help"], capture_output=True, text=True, check=True).stdout
    assert "backports" in out and "bookworm" in out and "--timeout" in out


def test_fix_tree_makes_one_headers_tree_that_build_points_at(vm_run, tmp_path, monkeypatch):
    abi = "6.1.0-56-amd64"
    root = tmp_path / "root"
    src = root / "usr" / "src"
    write(src / "linux-headers-6.1.0-56-common" / "include" / "linux" / "kconfig.h", "kconfig")
    write(src / "linux-headers-6.1.0-56-common" / "Makefile", "all:\n\t@echo common-ok\n")
    write(src / f"linux-headers-{abi}" / "include" / "generated" / "autoconf.h", "autoconf")
    write(src / f"linux-headers-{abi}" / "Makefile", "include /usr/src/linux-headers-6.1.0-56-common/Makefile\n")
    moddir = root / "lib" / "modules" / abi
    moddir.mkdir(parents=True)
    (moddir / "build").symlink_to(f"/usr/src/linux-headers-{abi}")
    (moddir / "source").symlink_to("/usr/src/linux-headers-6.1.0-56-common")
    calls = []
    monkeypatch.setattr(vm_run, "run", lambda cmd, **kw: calls.append(cmd))
    vm_run.fix_tree(root, abi)
    merged = src / f"linux-headers-{abi}-bcc"
    assert (moddir / "build").resolve() == merged.resolve()
    assert (moddir / "build" / "include" / "linux" / "kconfig.h").read_text() == "kconfig"
    assert (moddir / "build" / "include" / "generated" / "autoconf.h").read_text() == "autoconf"
    assert (moddir / "source").resolve() == (src / "linux-headers-6.1.0-56-common").resolve()
    out = subprocess.run(["make", "-s", "-C", str(moddir / "build")], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "common-ok"
    assert calls == [["depmod", "-a", "-b", str(root), abi]]
