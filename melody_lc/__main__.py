import sys

from melody_lc.cli import main

sys.exit(main())
