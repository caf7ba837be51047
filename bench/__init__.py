"""graphsend's benchmark suite: `make -C bench all` or `make -C bench quick`; see README.md."""
