import sys

from text2lofi.cli import main

sys.exit(main())
