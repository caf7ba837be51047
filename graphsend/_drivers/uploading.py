"""The sync driver of an upload session: answers ``upload._Upload.steps()`` with the Client's
per-thread Handle and ``time.sleep`` (AsyncClient answers the same steps on its loop)."""

from __future__ import annotations

import os
import time

from graphsend._drivers.sync import run
from graphsend._operations.upload import _Upload, open_regular

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from graphsend._drivers.client import Client
    from graphsend._native import Result
    from graphsend._operations.message import Attachment


def upload(
    client: Client,
    message_id: str,
    att: Attachment,
    user: str | None,
    progress: Callable[[int, int], object] | None,
) -> str:
    """Upload ``att`` to the draft; returns the attachment id (from the Location header)."""
    fd = -1
    try:
        if att.path is not None:
            fd, size = open_regular(att.path, att.name)
        else:
            size = att.size
        return _SyncUpload(client, message_id, att, user, progress, fd, size).run()
    finally:
        if fd >= 0:
            os.close(fd)


class _SyncUpload(_Upload):
    def session(self) -> str:
        op = self.session_op()
        return self.session_url(run(self.client, op, self.user), op)

    def put(self, url: str, start: int, end: int) -> Result:
        headers = (f"Content-Range: bytes {start}-{end}/{self.size}", *self.extra)
        length = end - start + 1
        handle = self.client._handle()
        if self.fd >= 0:
            return handle.request("PUT", url, headers, file=(self.fd, start, length))
        assert self.att.data is not None
        return handle.request("PUT", url, headers, self.att.data[start : end + 1])

    def delete(self, url: str) -> None:
        """DELETE the upload session (no token: the URL is pre-authenticated). Best effort:
        whatever happens here, the error the upload failed with is the one raised."""
        try:
            self.client._handle().request("DELETE", url, ())
        except Exception:
            pass

    def run(self) -> str:
        """Drive steps() with this thread's Handle."""
        steps = self.steps()
        try:
            step = next(steps)
            while True:
                if step[0] == "session":
                    answer: object = self.session()
                elif step[0] == "put":
                    answer = self.put(step[1], step[2], step[3])
                elif step[0] == "delete":
                    answer = self.delete(step[1])
                else:
                    time.sleep(step[1])
                    answer = None
                step = steps.send(answer)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
