import sys

from offsetlab.cli import main

sys.exit(main())
