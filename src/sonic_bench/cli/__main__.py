import sys

from sonic_bench.cli import main

sys.exit(main())
