"""Mutation testing for graphsend: ``make mutants`` (see mutants/README.md).

Two parts, both run on a scratch copy of the tree (the tree itself is never changed):

* promises: the hand-written mutations in mutants/promises.toml, each breaking one README
  promise; every one must be killed (a listed test fails).
* ast: small mutations generated from the code (operators, comparisons, constants, boolean
  flips, returned values) over the retry policy, the errors, the outcome and the Scheduler,
  each run against the tests listed in AST_TARGETS; survivors are listed for a person to judge:
  kill them with a test, or write the reason they are harmless into mutants/accepted.toml.

Results go to stdout and to mutants/results.md. Exit status: 1 when a promise mutation survived
or is stale (its ``old`` text is gone), else 0.
"""

from __future__ import annotations

import argparse
import ast
import copy
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
# Seconds for one mutant's tests (the slowest list takes ~15 s); longer counts as killed (hung).
TEST_TIMEOUT = 60

# File (and optionally the one class) to mutate -> the tests that should kill its mutants.
_RETRY_TESTS = [
    "tests/test_errors.py",
    "tests/test_client.py",
    "tests/test_send_message.py",
    "tests/test_promises.py::test_i15_02_backoff_doubles_until_its_cap_with_full_jitter",
    "tests/test_promises.py::test_i15_02_backoff_is_not_a_constant_nor_zero",
    "tests/test_promises_retry.py",
    "tests/test_promises_errors.py",
    "tests/test_policy_*.py",
    # Uploads retry chunks through the same policy (Retry(..., idempotent=True)).
    "tests/test_fix_upload.py",
]
AST_TARGETS: list[tuple[str, str | None, list[str]]] = [
    ("graphsend/_rules/retry.py", None, _RETRY_TESTS),
    ("graphsend/_rules/errors.py", None, _RETRY_TESTS),
    ("graphsend/_rules/outcome.py", None, _RETRY_TESTS),
    (
        "graphsend/_drivers/bulk.py",
        "Scheduler",
        [
            "tests/test_bulk.py",
            "tests/test_async.py",
            "tests/test_bulk_*.py",
            "tests/test_async_*.py",
            "tests/test_promises_errors.py",
        ],
    ),
]


# ------------------------------------------------------------------ the scratch tree


class Scratch:
    """A copy of the tree (no .git, no .venv) with its own built extension."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.path = Path(tempfile.mkdtemp(prefix="graphsend-mutants-"))
        ignore = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__")
        shutil.copytree(ROOT, self.path, dirs_exist_ok=True, ignore=ignore)
        self.build()
        found = subprocess.run(
            [python, "-c", "import graphsend; print(graphsend.__file__)"],
            cwd=self.path,
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not found.startswith(str(self.path)):
            raise SystemExit(f"the scratch copy imports graphsend from {found}, not from itself")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.path)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("GRAPHSEND_REQUIRE_DEFAULT_FEATURES", None)
        return env

    def build(self) -> None:
        subprocess.run(
            [self.python, "setup.py", "-q", "build_ext", "--inplace"],
            cwd=self.path,
            env={**self.env(), "GRAPHSEND_STRICT": "1"},
            check=True,
            capture_output=True,
        )

    def tests(self, args: list[str]) -> list[str]:
        """Expand globs among pytest arguments; drop patterns that match nothing."""
        out: list[str] = []
        for arg in args:
            if any(c in arg for c in "*?[") and not arg.startswith("-"):
                out += sorted(
                    os.path.relpath(p, self.path) for p in glob.glob(str(self.path / arg))
                )
            else:
                out.append(arg)
        return out

    def run_tests(
        self, args: list[str], show: bool = False, timeout: float = TEST_TIMEOUT
    ) -> tuple[str, float]:
        """'passed', 'failed' or 'timeout', and the seconds taken; ``show`` prints the tail of
        pytest's output when it failed."""
        command = [self.python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
        start = time.monotonic()
        try:
            done = subprocess.run(
                command,
                cwd=self.path,
                env=self.env(),
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return "timeout", time.monotonic() - start
        # 5: no tests ran (a -k that matches nothing): that kills nothing.
        verdict = "passed" if done.returncode in (0, 5) else "failed"
        if show and verdict == "failed":
            print(done.stdout.decode(errors="replace")[-3000:], file=sys.stderr)
        return verdict, time.monotonic() - start

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# ------------------------------------------------------------------ hand-written mutations


@dataclass
class Outcome:
    name: str
    status: str  # killed, survived, stale, ambiguous, no tests
    seconds: float = 0.0
    detail: str = ""


def run_promises(scratch: Scratch, only: set[str] | None) -> list[Outcome]:
    entries = tomllib.loads((HERE / "promises.toml").read_text())["mutant"]
    outcomes = []
    for entry in entries:
        name = entry["name"]
        if only and name not in only:
            continue
        target = scratch.path / entry["file"]
        original = target.read_text()
        count = original.count(entry["old"])
        if count != 1:
            status = "stale" if count == 0 else "ambiguous"
            detail = f"`old` found {count} times in {entry['file']}: update the entry"
            outcomes.append(Outcome(name, status, detail=detail))
            print(f"  {name}: {status.upper()} ({detail})", flush=True)
            continue
        tests = scratch.tests(entry["tests"])
        if not any(t.endswith(".py") or "::" in t for t in tests):
            outcomes.append(Outcome(name, "no tests", detail="no listed test file exists"))
            print(f"  {name}: NO TESTS", flush=True)
            continue
        target.write_text(original.replace(entry["old"], entry["new"]))
        try:
            if entry.get("native"):
                scratch.build()
            verdict, seconds = scratch.run_tests(tests)
        except subprocess.CalledProcessError:
            verdict, seconds = "does not build", 0.0
        finally:
            target.write_text(original)
            if entry.get("native"):
                scratch.build()
        status = {"passed": "survived", "does not build": "broken"}.get(verdict, "killed")
        detail = {"timeout": "timed out", "does not build": "the mutated C does not build"}.get(
            verdict, ""
        )
        outcomes.append(Outcome(name, status, seconds, detail))
        print(f"  {name}: {status} ({seconds:.1f} s) {detail}", flush=True)
    return outcomes


# ------------------------------------------------------------------ generated (AST) mutations

_SWAP: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.Pow: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.And: ast.Or,
    ast.Or: ast.And,
}
_SYMBOL = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
    ast.FloorDiv: "//",
    ast.And: "and",
    ast.Or: "or",
}


@dataclass
class Site:
    """One generated mutation: the n-th candidate node of a file, and what is done to it."""

    file: str
    node_index: int  # position in _candidates() order
    line: int
    what: str
    mutate: Callable[[ast.AST], ast.AST | None] = field(repr=False)

    @property
    def key(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: annotations, docstrings, __slots__, TYPE_CHECKING blocks."""
    skipped: set[int] = set()

    def skip(node: ast.AST | None) -> None:
        if node is not None:
            skipped.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            skip(node.returns)
            for arg in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                skip(arg.annotation)
        elif isinstance(node, ast.AnnAssign):
            skip(node.annotation)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in ("__slots__", "TYPE_CHECKING") for t in node.targets
        ):
            skip(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip(node)
    return skipped


def _in_class(tree: ast.Module, name: str | None) -> Callable[[ast.AST], bool]:
    if name is None:
        return lambda node: True
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            first, last = node.lineno, node.end_lineno or node.lineno
            return lambda n: first <= getattr(n, "lineno", 0) <= last
    raise SystemExit(f"class {name} not found")


def _mutations(node: ast.AST) -> Iterator[tuple[str, Callable[[ast.AST], ast.AST | None]]]:
    """(description, mutate) pairs for one node; mutate changes a copy of the node in place
    (returning None) or returns the node to put in its place."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _SWAP:
                new = _SWAP[type(op)]

                def swap(n: ast.AST, i: int = i, new: type = new) -> None:
                    n.ops[i] = new()  # type: ignore[attr-defined]

                yield f"{_SYMBOL[type(op)]} -> {_SYMBOL[new]}", swap
    elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in _SWAP:
        new = _SWAP[type(node.op)]

        def binop(n: ast.AST, new: type = new) -> None:
            n.op = new()  # type: ignore[attr-defined]

        yield f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}", binop
    elif isinstance(node, ast.BoolOp):
        new = _SWAP[type(node.op)]

        def boolop(n: ast.AST, new: type = new) -> None:
            n.op = new()  # type: ignore[attr-defined]

        yield f"{_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}", boolop
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "drop `not`", lambda n: n.operand  # type: ignore[attr-defined]
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield f"{node.value} -> {not node.value}", lambda n: ast.Constant(not n.value)  # type: ignore[attr-defined]
    elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        value = node.value
        yield f"{value!r} -> {value + 1!r}", lambda n, v=value: ast.Constant(v + 1)
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):

            def none(n: ast.AST) -> None:
                n.value = ast.Constant(None)  # type: ignore[attr-defined]

            yield "return None", none


def _candidates(tree: ast.Module, only_class: str | None) -> list[tuple[ast.AST, str, Callable]]:
    skipped = _skipped_nodes(tree)
    inside = _in_class(tree, only_class)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped or not inside(node):
            continue
        for what, mutate in _mutations(node):
            found.append((node, what, mutate))
    return found


def generate_sites(path: Path, file: str, only_class: str | None) -> list[Site]:
    tree = ast.parse(path.read_text())
    return [
        Site(file, i, getattr(node, "lineno", 0), what, mutate)
        for i, (node, what, mutate) in enumerate(_candidates(tree, only_class))
    ]


def mutated_source(source: str, site: Site, only_class: str | None) -> str:
    tree = ast.parse(source)
    node, _, mutate = _candidates(tree, only_class)[site.node_index]
    replacement = mutate(node)
    if replacement is not None:
        for parent in ast.walk(tree):
            for name, value in ast.iter_fields(parent):
                if value is node:
                    setattr(parent, name, copy.copy(replacement))
                elif isinstance(value, list):
                    value[:] = [replacement if v is node else v for v in value]
    return ast.unparse(ast.fix_missing_locations(tree))


def load_accepted() -> dict[str, str]:
    """Survivors judged harmless: 'file:line-text: what' -> reason (see accepted.toml)."""
    path = HERE / "accepted.toml"
    if not path.exists():
        return {}
    entries = tomllib.loads(path.read_text()).get("survivor", [])
    return {f"{e['file']}|{e['code'].strip()}|{e['mutation']}": e["reason"] for e in entries}


def run_ast(
    scratch: Scratch, limit: int | None, files: set[str] | None = None
) -> list[tuple[Site, str, str, str]]:
    """[(site, status, source line, accepted reason)]"""
    accepted = load_accepted()
    results = []
    for file, only_class, tests in AST_TARGETS:
        if files and file not in files:
            continue
        target = scratch.path / file
        original = target.read_text()
        lines = original.splitlines()
        sites = generate_sites(target, file, only_class)
        if limit is not None:
            sites = sites[:limit]
        args = scratch.tests(tests)
        print(f"  {file}{' ' + only_class if only_class else ''}: {len(sites)} mutants", flush=True)
        for site in sites:
            code = lines[site.line - 1].strip() if site.line else ""
            try:
                target.write_text(mutated_source(original, site, only_class))
                verdict, _ = scratch.run_tests(args)
            finally:
                target.write_text(original)
            status = "survived" if verdict == "passed" else "killed"
            reason = accepted.get(f"{file}|{code}|{site.what}", "")
            results.append((site, status, code, reason))
            if status == "survived":
                print(f"    survived {site.key}    {code}", flush=True)
    return results


# ------------------------------------------------------------------ report


def report(promises: list[Outcome], generated: list[tuple[Site, str, str, str]]) -> str:
    out = [
        "# Mutation testing results",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
    ]
    if promises:
        killed = sum(o.status == "killed" for o in promises)
        out += [
            f"## Promise mutations (mutants/promises.toml): {killed} of {len(promises)} killed",
            "",
            "| mutation | result | seconds |",
            "| --- | --- | --- |",
        ]
        out += [
            f"| {o.name} | {o.status}{f' ({o.detail})' if o.detail else ''} | {o.seconds:.1f} |"
            for o in promises
        ]
        out.append("")
    if generated:
        killed = sum(s == "killed" for _, s, _, _ in generated)
        survivors = [(site, code, reason) for site, s, code, reason in generated if s == "survived"]
        explained = sum(1 for *_, reason in survivors if reason)
        out += [
            f"## Generated mutations: {killed} of {len(generated)} killed "
            f"({100 * killed / len(generated):.1f}%); "
            f"{explained} of {len(survivors)} survivors judged harmless (mutants/accepted.toml)",
            "",
        ]
        for file, only_class, _ in AST_TARGETS:
            mine = [g for g in generated if g[0].file == file]
            if mine:
                k = sum(s == "killed" for _, s, _, _ in mine)
                out.append(f"- {file}{' ' + only_class if only_class else ''}: {k}/{len(mine)}")
        out += ["", "| survivor | code | why it is harmless |", "| --- | --- | --- |"]
        for site, code, reason in survivors:
            out.append(f"| {site.key} | `{code}` | {reason or '**unexplained**'} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--promises-only", action="store_true", help="skip the generated part")
    parser.add_argument("--ast-only", action="store_true", help="skip the hand-written part")
    parser.add_argument("--only", action="append", help="run this promise mutation (repeatable)")
    parser.add_argument("--limit", type=int, help="at most N generated mutants per file")
    parser.add_argument("--file", action="append", help="generate mutants for this file only")
    parser.add_argument("--out", default=str(HERE / "results.md"), help="where the report goes")
    args = parser.parse_args()
    # Started in the background, this process may have SIGINT ignored, which every test
    # process would inherit (the Ctrl-C tests then fail): a handler is reset to default at exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    scratch = Scratch(sys.executable)
    print(f"scratch tree: {scratch.path}", flush=True)
    try:
        baseline = sorted(
            {t for _, _, tests in AST_TARGETS for t in tests}
            | {
                t
                for e in tomllib.loads((HERE / "promises.toml").read_text())["mutant"]
                for t in e["tests"]
                if t.endswith(".py") or "::" in t
            }
        )
        # The baseline runs every listed test file at once: far longer than one mutant's run.
        verdict, seconds = scratch.run_tests(scratch.tests(baseline), show=True, timeout=900)
        if verdict != "passed":
            print(f"the unmutated tree's tests {verdict}: fix that first", file=sys.stderr)
            return 2
        print(f"baseline passes ({seconds:.0f} s)", flush=True)
        promises = [] if args.ast_only else run_promises(scratch, set(args.only or []))
        generated = (
            []
            if args.promises_only or args.only
            else run_ast(scratch, args.limit, set(args.file or []))
        )
    finally:
        scratch.remove()
    text = report(promises, generated)
    Path(args.out).write_text(text)
    print()
    print(text)
    bad = [o for o in promises if o.status != "killed"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
