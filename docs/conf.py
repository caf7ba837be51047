"""Sphinx configuration: the API reference from the docstrings (autodoc + napoleon) and the
guides in Markdown (MyST). `make docs` builds it with warnings as errors and nitpicky
references: a docstring that names a method that no longer exists fails the build."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from graphsend import __version__  # noqa: E402  (the checkout, with its built extension)

project = "graphsend"
author = "The graphsend authors"
copyright = "2026, The graphsend authors"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

# Google-style sections (Args, Returns, Raises, Attributes, Example), which read well in
# help() and IDE hovers too.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
napoleon_use_rtype = False
autoclass_content = "both"  # the class docstring, then __init__'s (the constructor's parameters)
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}
add_module_names = False

# Every cross-reference must resolve (-n), except names outside this package: the standard
# library and builtins (no intersphinx: CI reaches no documentation host), and type aliases
# that exist only for type checkers (``TYPE_CHECKING`` blocks).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(builtins\.)?(Value|Type|Key|OS|FileNotFound|Runtime|Import|Assertion)Error"),
    (r"py:.*", r"(builtins\.)?(NotImplementedError|Exception|BaseException|KeyboardInterrupt)"),
    (r"py:.*", r"(asyncio|os|ssl|email|collections|typing|types|datetime|pytest)(\..*)?"),
    (r"py:.*", r"(str|bytes|int|float|bool|object|list|dict|tuple|None|Any|Literal)"),
    (r"py:.*", r"(TokenArg|AsyncTokenArg|TokenSource|ProgressArg|Item|Recipient|Source)"),
    (r"py:.*", r"(AccessTokenLike|CredentialLike|AsyncCredentialLike|TracebackType|Iterator)"),
    (r"py:.*", r"(Iterable|Mapping|Sequence|Callable|Awaitable|DraftKind|IdStyle|Outcome)"),
    (r"py:.*", r"(Limiter|Verdict)"),
    (r"py:.*", r"(graphsend\.)?_\w+(\..*)?"),
]

html_theme = "furo"
html_title = f"graphsend {release}"
html_static_path: list[str] = []
