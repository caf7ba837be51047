"""Send one draft by its id, and say what happened.

    GRAPH_TOKEN=... python send_one.py AAMkAGI2... [adele@contoso.com]

Configuration comes from the environment: GRAPH_TOKEN (an access token with Mail.Send),
optionally GRAPH_BASE_URL (another Graph host) and GRAPH_CA_BUNDLE (a PEM file of CAs to
trust). For an app that signs in itself, pass an azure-identity credential instead of a str:
``graphsend.Client(ClientSecretCredential(tenant_id, client_id, secret))``.
"""

from __future__ import annotations

import os
import sys

import graphsend


def main() -> int:
    draft_id = sys.argv[1]
    user = sys.argv[2] if len(sys.argv) > 2 else None  # None: the signed-in user (/me)
    client = graphsend.Client(
        os.environ["GRAPH_TOKEN"],
        base_url=os.environ.get("GRAPH_BASE_URL"),
        ca_bundle=os.environ.get("GRAPH_CA_BUNDLE"),
    )
    with client:
        try:
            receipt = client.send(draft_id, user=user)
        except graphsend.SendError as exc:
            # may_have_sent decides what to do next: sending again after a send that did go
            # through delivers the message twice.
            verdict = "it MAY have been sent" if exc.may_have_sent else "nothing was sent"
            print(f"failed: {exc} ({verdict})", file=sys.stderr)
            return 3 if exc.may_have_sent else 1
    print(f"sent: {receipt.status}, request-id {receipt.request_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
