"""``python -m graphsend.testing``: see graphsend.testing._cli."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
