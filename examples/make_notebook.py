"""Write notebook.ipynb from the cells below (the notebook is generated so that it stays
reviewable as Python; run ``python examples/make_notebook.py`` after editing a cell)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    (
        "md",
        """# graphsend in a notebook

Send Microsoft Graph mail from Jupyter: compose and send, many at once with a progress bar,
errors that say whether a message may have gone out, and `await` on the notebook's own event
loop. Ctrl-C (the kernel's interrupt) stops a send within a second.

Set `GRAPH_TOKEN` to an access token with Mail.Send and Mail.ReadWrite before starting
Jupyter (or use an azure-identity credential, below). `GRAPH_BASE_URL` and `GRAPH_CA_BUNDLE`
point at another Graph host (the examples' runner sets them to a FakeGraph server).""",
    ),
    (
        "code",
        """import os

import graphsend
from graphsend import Message

token = os.environ["GRAPH_TOKEN"]
# Or sign in interactively (pip install azure-identity):
#   from azure.identity import InteractiveBrowserCredential
#   token = InteractiveBrowserCredential()
base_url = os.environ.get("GRAPH_BASE_URL")  # None: graph.microsoft.com
ca_bundle = os.environ.get("GRAPH_CA_BUNDLE")  # None: the system's CAs
recipient = os.environ.get("GRAPH_TEST_RECIPIENT", "megan@contoso.com")

client = graphsend.Client(token, base_url=base_url, ca_bundle=ca_bundle)
client""",
    ),
    ("md", "## A draft, then send it\n\nThe draft keeps its id in Sent Items."),
    (
        "code",
        """draft_id = client.create_draft(
    Message("Notebook report", "<p>Made in Jupyter.</p>", body_type="html", to=recipient)
)
receipt = client.send(draft_id)
receipt""",
    ),
    (
        "md",
        """## Errors say whether the message may have gone out

Sending the same draft again: Graph no longer knows the id (404), and nothing was sent.""",
    ),
    (
        "code",
        """try:
    client.send(draft_id)
except graphsend.NotFoundError as exc:
    print(type(exc).__name__, exc.status, exc.code, "may_have_sent =", exc.may_have_sent)""",
    ),
    (
        "md",
        """## Many at once, with a progress bar

`progress=True` shows tqdm's widget when tqdm is installed, otherwise a few lines of text.
Messages that fit one request go out with sendMail, at most 4 in flight per mailbox.""",
    ),
    (
        "code",
        """messages = [Message(f"Hello {n}", "Sent in bulk.", to=recipient) for n in range(20)]
results = client.send_many(messages, progress=True)
failed = [r for r in results if isinstance(r, graphsend.SendError)]
print(len(results) - len(failed), "sent,", len(failed), "failed")""",
    ),
    (
        "md",
        """## asyncio: `await` on the notebook's loop

AsyncClient runs libcurl on the running event loop (no thread), so top-level `await` works.""",
    ),
    (
        "code",
        """import asyncio

async with graphsend.AsyncClient(token, base_url=base_url, ca_bundle=ca_bundle) as aclient:
    receipts = await asyncio.gather(
        *(aclient.send_mail(Message(f"Async {n}", "Hi", to=recipient)) for n in range(3))
    )
[r.status for r in receipts]""",
    ),
    ("code", "client.close()"),
]


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell(text) if kind == "md" else new_code_cell(text) for kind, text in CELLS
    ]
    for number, cell in enumerate(nb.cells, 1):
        cell.id = f"cell-{number}"  # stable ids: regenerating changes nothing
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    path = Path(__file__).with_name("notebook.ipynb")
    nbformat.write(build(), str(path))
    print(f"wrote {path}")
