"""``python -m gumbel_rerank``: the same as the ``gumbel-rerank`` console script."""

import sys

from gumbel_rerank.cli import main

sys.exit(main())
