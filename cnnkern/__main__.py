import sys

from cnnkern.tools.cli import main

sys.exit(main())
