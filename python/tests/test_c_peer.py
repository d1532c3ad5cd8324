"""A C consumer (the C ABI's example, built against the installed library)
beside Python and Rust consumers on one Rust producer: every frame of every
kind of peer checked byte for byte."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def c_consumer(tmp_path_factory):
    """``examples/c/consumer.c`` compiled against libframebus installed by
    ``crates/ffi/install.sh`` into a private prefix."""
    cc = shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (cc) on this machine")
    work = tmp_path_factory.mktemp("c-peer")
    prefix = work / "prefix"
    # The root's target directory, where the release `framebus` the tests
    # run was built: its dependencies are compiled already.
    env = {k: v for k, v in os.environ.items() if k != "CARGO_TARGET_DIR"}
    r = subprocess.run(
        ["bash", str(ROOT / "crates/ffi/install.sh"), str(prefix)],
        capture_output=True, text=True, timeout=1200, env=env,
    )
    assert r.returncode == 0, f"install.sh failed:\n{r.stdout}\n{r.stderr}"
    exe = work / "consumer"
    r = subprocess.run(
        [cc, "-std=c11", "-O2", str(ROOT / "examples/c/consumer.c"),
         f"-I{prefix / 'include'}", f"-L{prefix / 'lib'}", "-lframebus",
         f"-Wl,-rpath,{prefix / 'lib'}", "-o", str(exe)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, f"cc failed:\n{r.stderr}"
    return exe


def test_c_python_and_rust_consumers_share_a_bus(bus, c_consumer):
    bus.produce(size="160x120", fps=100, pins=2)
    c = bus.spawn([str(c_consumer), "--bus", bus.name, "--frames", "150",
                   "--verify", "--quiet", "--json", "--attach-timeout-ms", "20000"], "c-consumer")
    py = bus.py_consumer("--mode", "rate", "--duration", "2")
    rust = bus.rust_consumer("--algo", "verify", "--frames", "150", "--json")
    for p in (c, py, rust):
        assert p.wait_exit(60) == 0, p.describe()
        r = p.last_json()
        assert r["bad_frames"] == 0, r
        assert r["frames"] > 0, r
    assert c.last_json()["frames"] == 150
    assert rust.last_json()["frames"] == 150
