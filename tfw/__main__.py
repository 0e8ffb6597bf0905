import sys

from tfw.cli import main

sys.exit(main())
