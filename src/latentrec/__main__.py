import sys

from latentrec.cli import entry

sys.exit(entry())
