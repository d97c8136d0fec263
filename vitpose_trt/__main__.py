"""`python -m vitpose_trt`: the `vitpose-trt` command line."""

import sys

from vitpose_trt.cli import main

sys.exit(main())
