import sys

from lvmae.cli import main

sys.exit(main())
