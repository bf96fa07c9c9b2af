"""``python3 -m pbs_exporter``: the exporter (in the repository, ``python3 -m services.pbs_exporter``)."""

import sys

from .cli import main

sys.exit(main())
