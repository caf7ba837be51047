"""The sdist: made without libcurl (it is needed to build the extension, not to package the
source), and setup.py stops with a clear message, not a compiler error, where it cannot build:
no libcurl development files, or Windows. Each case runs setup.py in a subprocess whose PATH
holds no pkg-config and no curl-config. (`make wheel` builds the wheel from this sdist, and
`make wheel-check` installs the sdist against the system libcurl.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# setup.py runs with this Python: a venv that has the wheel installed may have no setuptools.
pytest.importorskip("setuptools")


def setup_py(tmp_path: object, *args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """Run setup.py with a PATH that finds neither pkg-config nor curl-config."""
    empty = os.path.join(str(tmp_path), "empty-path")
    os.makedirs(empty, exist_ok=True)
    env = {**os.environ, "PATH": empty, "PKG_CONFIG_LIBDIR": empty, "PKG_CONFIG_PATH": ""}
    code = prelude + "import runpy, sys; sys.argv = ['setup.py', *sys.argv[1:]]; "
    code += "runpy.run_path('setup.py', run_name='__main__')"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sdist_is_made_without_libcurl(tmp_path: object) -> None:
    out = os.path.join(str(tmp_path), "dist")
    proc = setup_py(tmp_path, "-q", "sdist", "--dist-dir", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (name,) = os.listdir(out)
    with tarfile.open(os.path.join(out, name)) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    # What a build from source needs: the C sources, the package, its build requirements.
    assert {"setup.py", "pyproject.toml", "csrc/module.c", "csrc/native.h", "LICENSE"} <= names
    assert "graphsend/_native.pyi" in names and "graphsend/_rules/ca.py" in names
    assert "graphsend/_wheel.py" not in names  # the wheel's marker: a source build has none


def test_build_without_libcurl_says_what_to_install(tmp_path: object) -> None:
    build = os.path.join(str(tmp_path), "build")
    proc = setup_py(tmp_path, "-q", "build_ext", "--build-temp", build, "--build-lib", build)
    assert proc.returncode != 0
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("graphsend needs libcurl's development files"), proc.stderr
    assert "libcurl4-openssl-dev" in message and "libcurl-devel" in message
    assert "error:" not in proc.stderr  # stopped before any compiler ran


@pytest.mark.parametrize("command", ["sdist", "build_ext"])
def test_windows_is_refused_with_a_clear_message(tmp_path: object, command: str) -> None:
    proc = setup_py(tmp_path, command, prelude="import sys; sys.platform = 'win32'; ")
    assert proc.returncode != 0
    assert "graphsend does not build on Windows yet" in proc.stderr
    assert "WSL" in proc.stderr
