"""``python -m bayeslrp``: the command line."""
import sys

from bayeslrp.cli import main

if __name__ == "__main__":
    sys.exit(main())
