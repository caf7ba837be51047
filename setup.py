"""Build graphsend._native from csrc/ against the system libcurl."""

import glob
import os
import shlex
import subprocess
import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    # csrc/ waits on POSIX sockets and uses pthreads; nobody has ported or tested it on Windows.
    raise SystemExit(
        "graphsend does not build on Windows yet: its C core (csrc/) needs a POSIX system "
        "(Linux, macOS, the BSDs). Use WSL, or a Linux container."
    )


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
    raise SystemExit(
        "graphsend needs libcurl's development files (pkg-config libcurl or curl-config). "
        "On Debian/Ubuntu: apt-get install libcurl4-openssl-dev"
    )


cflags, libs = _libcurl_flags()
compile_args = ["-std=c11", "-O2", *cflags]
if os.environ.get("GRAPHSEND_STRICT") == "1":
    compile_args += ["-Wall", "-Wextra", "-Werror"]
if os.environ.get("GRAPHSEND_ASAN") == "1":
    # AddressSanitizer and UndefinedBehaviorSanitizer (.ci/asan, `make asan`): Python itself is
    # not instrumented, so libasan must be LD_PRELOADed into the interpreter.
    sanitizers = "-fsanitize=address,undefined"
    compile_args += [sanitizers, "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    compile_args += ["-O1", "-g"]
    libs = [sanitizers, *libs]
# GRAPHSEND_ABI3=1: build against the Limited API (one extension for every CPython >= 3.10).
# The default targets the running Python, which on 3.12+ declares per-interpreter GIL support.
abi3 = os.environ.get("GRAPHSEND_ABI3") == "1"
macros = [("GRAPHSEND_ABI3", "1")] if abi3 else []
# GRAPHSEND_PORTABLE=1: send_many waits with libcurl's curl_multi_poll() instead of epoll, as it
# does on every system but Linux (`make test-portable` runs the suite against that build).
if os.environ.get("GRAPHSEND_PORTABLE") == "1":
    macros.append(("GRAPHSEND_PORTABLE", "1"))

setup(
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
    ]
)
