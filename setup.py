"""Build graphsend._native from csrc/ against the system libcurl.

libcurl is looked up when the extension is built, not when this file is read, so an sdist (and
pip's metadata step) needs no libcurl. packaging/build-wheel.sh points pkg-config at a static
libcurl of its own for the manylinux wheel.
"""

import sys

if sys.platform == "win32":
    # csrc/ waits on POSIX sockets and uses pthreads; nobody has ported or tested it on Windows.
    # Said before anything else is imported or runs (tempfile imports shutil, which on Windows
    # needs _winapi), so pip shows this and not a later failure.
    raise SystemExit(
        "graphsend does not build on Windows yet: its C core (csrc/) needs a POSIX system "
        "(Linux, macOS, the BSDs). Use WSL, or a Linux container."
    )

import glob
import os
import shlex
import subprocess
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _libcurl_flags() -> tuple[list[str], list[str]]:
    """Return (compile flags, link flags) from pkg-config, else curl-config."""
    for cflags_cmd, libs_cmd in (
        (["pkg-config", "--cflags", "libcurl"], ["pkg-config", "--libs", "libcurl"]),
        (["curl-config", "--cflags"], ["curl-config", "--libs"]),
    ):
        try:
            cflags = subprocess.check_output(cflags_cmd, text=True, stderr=subprocess.DEVNULL)
            libs = subprocess.check_output(libs_cmd, text=True, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.CalledProcessError):
            continue
        return shlex.split(cflags), shlex.split(libs)
    raise SystemExit(_NO_HEADERS.format(why="neither pkg-config libcurl nor curl-config found it"))


_NO_HEADERS = (
    "graphsend needs libcurl's development files: {why}. "
    "On Debian/Ubuntu: apt-get install libcurl4-openssl-dev; on Fedora/RHEL: dnf install "
    "libcurl-devel; on macOS: brew install curl pkg-config. On Linux x86_64 (glibc 2.28 or "
    "later) a binary wheel needs neither: pip install --only-binary=graphsend graphsend"
)


class _BuildExt(build_ext):
    """Add libcurl's flags at build time, after checking that curl/curl.h compiles."""

    def build_extensions(self) -> None:
        cflags, libs = _libcurl_flags()
        self._check_curl_header(cflags)
        for ext in self.extensions:
            ext.extra_compile_args = [*ext.extra_compile_args, *cflags]
            ext.extra_link_args = [*ext.extra_link_args, *libs]
        super().build_extensions()

    def _check_curl_header(self, cflags: list[str]) -> None:
        # A missing header would otherwise surface as a compiler error deep in csrc/.
        with tempfile.TemporaryDirectory() as tmp:
            probe = os.path.join(tmp, "probe.c")
            with open(probe, "w") as f:
                f.write("#include <curl/curl.h>\nint main(void) { return CURLE_OK; }\n")
            try:
                self.compiler.compile([probe], output_dir=tmp, extra_postargs=cflags)
            except Exception as exc:  # CompileError, or no compiler at all (OSError)
                raise SystemExit(
                    _NO_HEADERS.format(why=f"<curl/curl.h> does not compile here ({exc})")
                ) from None


compile_args = ["-std=c11", "-O2"]
libs: list[str] = []
if os.environ.get("GRAPHSEND_STRICT") == "1":
    compile_args += ["-Wall", "-Wextra", "-Werror"]
if os.environ.get("GRAPHSEND_ASAN") == "1":
    # AddressSanitizer and UndefinedBehaviorSanitizer (.ci/asan, `make asan`): Python itself is
    # not instrumented, so libasan must be LD_PRELOADed into the interpreter.
    sanitizers = "-fsanitize=address,undefined"
    compile_args += [sanitizers, "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    compile_args += ["-O1", "-g"]
    libs = [sanitizers]
# GRAPHSEND_ABI3=1: build against the Limited API (one extension for every CPython >= 3.10).
# The default targets the running Python, which on 3.12+ declares per-interpreter GIL support.
abi3 = os.environ.get("GRAPHSEND_ABI3") == "1"
macros = [("GRAPHSEND_ABI3", "1")] if abi3 else []
# GRAPHSEND_PORTABLE=1: send_many waits with libcurl's curl_multi_poll() instead of epoll, as it
# does on every system but Linux (`make test-portable` runs the suite against that build).
if os.environ.get("GRAPHSEND_PORTABLE") == "1":
    macros.append(("GRAPHSEND_PORTABLE", "1"))

setup(
    cmdclass={"build_ext": _BuildExt},
    # The abi3 extension loads on every CPython >= 3.10: tag the wheel cp310-abi3 to say so.
    options={"bdist_wheel": {"py_limited_api": "cp310"}} if abi3 else {},
    packages=[
        "graphsend",
        "graphsend._rules",
        "graphsend._operations",
        "graphsend._drivers",
        "graphsend.integrations",
        "graphsend.testing",
    ],
    package_data={"graphsend": ["py.typed", "*.pyi"]},
    ext_modules=[
        Extension(
            "graphsend._native",
            sources=sorted(glob.glob("csrc/*.c")),
            depends=sorted(glob.glob("csrc/*.h")),
            extra_compile_args=compile_args,
            extra_link_args=libs,
            define_macros=macros,
            py_limited_api=abi3,
        )
    ],
)
