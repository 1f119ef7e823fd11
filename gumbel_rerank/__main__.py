import sys

from gumbel_rerank.cli import main

sys.exit(main())
