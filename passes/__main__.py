import sys

from passes.cli import main

sys.exit(main())
