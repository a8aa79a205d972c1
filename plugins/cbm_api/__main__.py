"""``python plugins/cbm_api [--host H] [--port P]``: the standalone parcel API (uvicorn)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))       # plugins/, to import the package
from cbm_api import main  # noqa: E402

sys.exit(main())
