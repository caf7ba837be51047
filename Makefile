# Two user-facing entry points: `make demo` and `make test`. Both set up everything on a fresh machine.
PY        ?= python3
VENV      := .venv
VPY       := $(VENV)/bin/python
STAMP     := $(VENV)/.installed

.PHONY: demo test test-one check test-pythons test-scale test-portable lint typecomplete build deps \
	venv memcheck asan mutants bench bench-quick conformance docs examples wheel wheel-check clean

deps:
	@./.ci/ensure-libcurl
	@./.ci/ensure-redis

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip "setuptools>=77"

venv: $(VPY)

# Install the package (editable) with its test tools once; rebuild the extension in place,
# with warnings as errors, whenever csrc/ changes.
$(STAMP): pyproject.toml setup.py | deps $(VPY)
	GRAPHSEND_STRICT=1 $(VPY) -m pip install -q -e '.[test]'
	touch $(STAMP)

build: deps $(STAMP)
	GRAPHSEND_STRICT=1 $(VPY) setup.py -q build_ext --inplace

demo: build
	$(VPY) -m graphsend demo

# tests/typed_usage.py is the public API as strict users write it (mypy --strict and pyright
# strict; basedpyright bundles node, so it works offline, unlike the pyright wrapper).
lint: build typecomplete
	$(VPY) -m ruff check graphsend tests bench examples packaging setup.py
	$(VPY) -m ruff format --check graphsend tests bench examples packaging setup.py
	./packaging/abi3-check.sh $(VPY)
	$(VPY) -m mypy tests/typed_usage.py
	$(VENV)/bin/basedpyright tests/typed_usage.py

# pyright --verifytypes: at least 95 % type completeness and a docstring on every public name.
typecomplete: build
	./.ci/typecomplete

# The suite on every supported Python the machine has (requires-python up to 3.13): the main
# one in .venv, then each other one in its own .venv-3.X (.ci/test-pythons says which ran).
test: test-one test-pythons

# One Python (.venv), for iteration: lint and the suite.
test-one: build lint
	$(VPY) -m pytest -q -rs

# Scale-out with real Celery worker processes and redis-servers (tests/test_scale.py, about a
# minute): 4 workers x 4 against FakeGraph's MailboxConcurrency limit, a worker SIGKILLed, Redis
# stopped mid-run.
test-scale: build
	GRAPHSEND_SCALE=1 $(VPY) -m pytest -q -rs tests/test_scale.py
check: test-one

test-pythons: build
	./.ci/test-pythons

# The suite against the portable event wait (curl_multi_poll, as on macOS), built in build/portable.
test-portable: build
	./.ci/portable

# Native tests under valgrind: fails on invalid reads/writes and definite leaks from csrc/.
memcheck: build
	./.ci/memcheck

# The suite against an ASan+UBSan build of the extension (in build/asan, the in-place one stays).
asan: build
	./.ci/asan

# Mutation testing: break each README promise on purpose (mutants/promises.toml) and mutate the
# retry policy, errors and Scheduler; the suite must notice. Slow (about half an hour), so not
# part of `make test`; see mutants/README.md. Needs Python 3.11+ (tomllib).
mutants: build
	$(VPY) mutants/run.py

# Does FakeGraph speak Graph? The compose scenario through msgraph-sdk's own request builders
# and as plain urllib requests must be accepted and stored alike. msgraph-sdk is heavy, so it
# is installed here on demand, not with the test extra.
conformance: build
	$(VPY) -c "import msgraph" 2>/dev/null || $(VPY) -m pip install -q msgraph-sdk
	$(VPY) bench/conformance/msgraph_sdk_check.py

bench: build
	$(MAKE) -C bench all

bench-quick: build
	$(MAKE) -C bench quick

# The API reference and guides (docs/) into site/, warnings as errors.
# Sphinx (autodoc + napoleon, MyST for the Markdown guides); -W -n: a warning or a reference
# that does not resolve fails the build. Its tools come from the `docs` extra, once.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): pyproject.toml | $(STAMP)
	GRAPHSEND_STRICT=1 $(VPY) -m pip install -q -e '.[docs]'
	touch $@

docs: build $(DOCS_STAMP)
	rm -rf site
	$(VPY) -m sphinx -W --keep-going -n -q -E -b html docs site
	@echo "docs: built site/index.html"

# Every script in examples/ against FakeGraph, and the notebook through a real Jupyter kernel.
examples: build
	$(VPY) examples/run_all.py

# `pip install graphsend` without a compiler: the sdist and a manylinux_2_28 x86_64 abi3 wheel
# with its own static libcurl (OpenSSL, nghttp2; sources from Debian), in dist/. The first run
# builds the libraries (a few minutes); later runs reuse them (build/wheel).
wheel:
	./packaging/build-wheel.sh

# The wheel, in a fresh venv inside a minimal Debian root file system without libcurl or a
# compiler (debootstrap, made once in build/wheel-check), sends over HTTPS to FakeGraph.
wheel-check: build wheel
	./packaging/wheel-check.sh $(VPY)

clean:
	rm -rf build dist site $(VENV) $(VENV)-3.* graphsend/*.so *.egg-info
