"""Without FastAPI installed, importing hookapi.fastapi says which extra to install."""

from __future__ import annotations

import subprocess
import sys


def test_without_fastapi_the_import_error_says_what_to_install() -> None:
    code = "import sys; sys.modules['fastapi'] = None; import hookapi.fastapi"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: hookapi.fastapi needs FastAPI and Starlette (fastapi is missing): "
        'pip install "hookapi[fastapi]"'
    )
