"""Compose: a draft with attachments (any size up to 150 MB), sent; and a sendMail.

    GRAPH_TOKEN=... python compose.py bob@contoso.com report.pdf [more files...]

``create_draft`` puts small attachments in the create request and uploads large ones (over
3 MB) through an upload session, in chunks read from disk in C that never carry the token;
``send`` sends the draft, which keeps its id in Sent Items. ``send_mail`` sends a message that
fits in one 4 MB request without a draft, with Mail.Send only. Creating drafts needs
Mail.ReadWrite.
"""

from __future__ import annotations

import os
import sys

import graphsend
from graphsend import Attachment, Message


def main() -> int:
    recipient, *paths = sys.argv[1:]
    client = graphsend.Client(
        os.environ["GRAPH_TOKEN"],
        base_url=os.environ.get("GRAPH_BASE_URL"),
        ca_bundle=os.environ.get("GRAPH_CA_BUNDLE"),
    )
    logo = b"\x89PNG\r\n\x1a\n" + bytes(64)  # stands for your image's bytes
    message = Message(
        "Quarterly report",
        '<p>The numbers are attached.</p><img src="cid:logo">',
        body_type="html",
        to=[recipient],
        headers={"X-Campaign": "q3"},
        attachments=[
            *paths,
            Attachment(logo, name="logo.png", inline=True, content_id="logo"),
        ],
    )
    with client:
        try:
            draft_id = client.create_draft(message)
        except graphsend.SendError as exc:
            # exc.draft_id is set when the draft exists but an attachment failed.
            print(f"could not make the draft: {exc}", file=sys.stderr)
            return 1
        receipt = client.send(draft_id)
        print(f"draft with {len(message.attachments)} attachments sent: {receipt.status}")

        receipt = client.send_mail(Message("Lunch?", "12:30?", to=recipient))
        print(f"sendMail: {receipt.status} request-id {receipt.request_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
