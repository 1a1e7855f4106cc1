import sys

from cnnkern.cli import main

sys.exit(main())
