import sys

from latentrec.cli import main

sys.exit(main())
