"""Sphinx configuration: MyST Markdown pages, API reference from the docstrings, no network."""

from __future__ import annotations

import hookapi

project = "hookapi"
author = "The hookapi developers"
copyright = "2026, the hookapi developers"
release = hookapi.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_attr_annotations = True
# The TLS options' aliases link to their entries in the reference instead of spelling out the union.
autodoc_type_aliases = {
    "VerifyTypes": "hookapi.VerifyTypes",
    "CertTypes": "hookapi.CertTypes",
    # The OpenTelemetry options name the API's provider classes (imported for type checking only).
    "TracerProvider": "opentelemetry.trace.TracerProvider",
    "MeterProvider": "opentelemetry.metrics.MeterProvider",
}

html_theme = "furo"
html_title = f"hookapi {release}"

# No intersphinx (the docs build offline), so references to other projects' and the standard
# library's types cannot resolve; everything of hookapi's own must.
nitpick_ignore_regex = [
    (
        "py:class",
        r"(httpx|redis|collections\.abc|contextlib|datetime|enum|asyncio|ssl|os|starlette|fastapi"
        r"|opentelemetry|logging)\..*",
    ),
    ("py:class", r"datetime"),  # the standard library's, as an annotation names it
    ("py:class", r"_asyncio\..*"),  # asyncio's C classes, as their annotations name them
    # OpenTelemetry's providers where autodoc shows an annotation as written (no alias applied).
    ("py:class", r"(TracerProvider|MeterProvider)"),
    ("py:class", r"hookapi\.fastapi\._App"),
    ("py:class", r"hookapi\.testing\._loop\._T"),
    ("py:exc", r"httpx\..*"),
    ("py:func", r"(anyio|logging)\..*"),
]
