"""mypy rejects a misspelled client option, and says which (run on a snippet, like a user would).

The unused-ignore checks in ``check_public_api.py`` prove the same under ``mypy --strict``; this
test shows the message a user sees, from inside the test suite.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]

SNIPPET = textwrap.dedent(
    """\
    from hookapi import AsyncHookClient, HookClient

    AsyncHookClient.from_env(timout=5)
    HookClient.from_url("https://x.test/a/b", max_conections=4)
    AsyncHookClient.from_env(timeout=5, max_connections=4)
    """
)


def test_mypy_rejects_a_misspelled_option(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    out, err, status = api.run(
        [
            "--strict",
            "--no-error-summary",
            "--hide-error-context",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--config-file",
            "",
            str(snippet),
        ]
    )
    assert status == 1, err
    errors = [line.split(": ", 1)[1] for line in out.splitlines() if ": error: " in line]
    assert errors == [
        'error: Unexpected keyword argument "timout" for "from_env" of "AsyncHookClient"; '
        'did you mean "timeout"?  [call-arg]',
        'error: Unexpected keyword argument "max_conections" for "from_url" of "HookClient"; '
        'did you mean "max_connections"?  [call-arg]',
    ]
