import sys

from scada.tools.cli import main

sys.exit(main())
