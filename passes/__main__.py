import sys

from passes.app.cli import main

sys.exit(main())
