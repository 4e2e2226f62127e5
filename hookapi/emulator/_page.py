"""The desktop page: an ASGI app that shows an emulator's Desktops and hands it everything else.

``GET /`` lists every Desktop with the bot's latest messages (each at its UTC time on the
emulator's clock), its hooks' quota and the faults injected; ``GET /desktops/{name}`` shows one
Desktop in full and ``GET /state.json`` the same facts for scripts. Every other request (the
hook endpoint above all) goes to the emulator's own app untouched. Message text and Desktop
names are user input, so every piece of text goes through :func:`html.escape`, and a
Content-Security-Policy that allows no script at all stands behind that. Hook secrets never
appear: the page knows hooks by id only.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping
    from datetime import datetime

    from . import Emulator, Hook, PostedMessage

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]

__all__ = ["DesktopPage"]

#: Messages per Desktop on the overview; a Desktop's own page shows up to ``_FULL``.
_LATEST: Final = 20
_FULL: Final = 500
_SECURITY_HEADERS: Final = [
    # Escaping is the defence; this is the second wall: no script, frame or form can run here.
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; "
        b"form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
_STYLE: Final = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 1.5rem auto; max-width: 60rem;
       padding: 0 1rem; color: #1d232a; background: #f6f7f9; }
h1 { font-size: 1.4rem; margin: 0 0 .2rem; }
h2 { font-size: 1.15rem; margin: 0 0 .4rem; }
a { color: #1f5fbf; }
.meta, .quota, .faults { color: #4a5561; margin: .2rem 0; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 8px;
          padding: .8rem 1rem; margin: 1rem 0; }
ol { list-style: none; padding: 0; margin: .5rem 0 0; }
li { border-top: 1px solid #eef0f3; padding: .35rem 0; display: flex; gap: .8rem; }
time { color: #6b7682; font-variant-numeric: tabular-nums; white-space: nowrap; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.empty { color: #6b7682; font-style: italic; }
code { font-size: .9em; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _time(when: datetime) -> str:
    """A ``<time>`` element: the ISO 8601 time for machines, date and time in UTC for people."""
    shown = when.strftime("%Y-%m-%d %H:%M:%S")
    return f'<time datetime="{_e(when.isoformat())}">{shown} UTC</time>'


class DesktopPage:
    """The ASGI app serving the desktop page in front of an emulator's own app.

    Args:
        emulator: The emulator whose state the page shows and whose app answers the rest.
        refresh: Seconds between the browser's reloads of a page.
        note: A line shown under the title (such as how fast the emulator's clock runs).
    """

    def __init__(self, emulator: Emulator, *, refresh: float = 2.0, note: str = "") -> None:
        self._emulator = emulator
        self._refresh = refresh
        self._note = note

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the page's own routes; pass every other request to the emulator's app."""
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            answer = self._route(scope)
            if answer is not None:
                status, content_type, body = answer
                await _respond(send, scope, status, content_type, body)
                return
        await self._emulator.app(scope, receive, send)

    def _route(self, scope: Scope) -> tuple[int, bytes, bytes] | None:
        # Some servers leave the query string on raw_path; the page's routes take none.
        raw = bytes(scope.get("raw_path") or scope["path"].encode("utf-8")).partition(b"?")[0]
        parts = raw.split(b"/")
        if raw == b"/":
            return 200, b"text/html; charset=utf-8", self.render_index().encode()
        if raw == b"/state.json":
            body = json.dumps(self.state(), ensure_ascii=True, indent=1)
            # No raw markup even in JSON, so a browser that sniffs it cannot find any.
            for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
                body = body.replace(char, escape)
            return 200, b"application/json", body.encode()
        if len(parts) == 3 and parts[1] == b"desktops" and parts[2]:
            name = unquote(parts[2].decode("ascii", "replace"))
            if name not in self._emulator.desktops():
                body = self._document("No such Desktop", '<p class="empty">No such Desktop.</p>')
                return 404, b"text/html; charset=utf-8", body.encode()
            return 200, b"text/html; charset=utf-8", self.render_desktop(name).encode()
        return None

    # -- what the page shows -----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The page's facts as JSON-ready data: settings, faults and every Desktop's messages."""
        emulator = self._emulator
        desktops = []
        for name in emulator.desktops():
            hooks = self._hooks(name)
            messages = [m for m in emulator.messages() if m.desktop == name]
            desktops.append(
                {
                    "name": name,
                    "hooks": [self._hook_state(hook) for hook in hooks],
                    "message_count": len(messages),
                    "messages": [
                        {
                            "text": m.text,
                            "hook_id": m.hook_id,
                            "received_at": m.received_at.isoformat(),
                        }
                        for m in messages[-_FULL:]
                    ],
                }
            )
        return {
            "window": emulator.window,
            "per_hour": emulator.per_hour,
            "per_day": emulator.per_day,
            "fault_rate": emulator.fault_rate,
            "latency": emulator.latency,
            "faults_injected": emulator.faults_injected,
            "faults_pending": len(emulator.pending_faults()),
            "answers": {str(k): v for k, v in sorted(emulator.status_counts.items())},
            "desktops": desktops,
        }

    def _hooks(self, desktop: str) -> list[Hook]:
        return [hook for hook in self._emulator.hooks() if hook.desktop == desktop]

    def _hook_state(self, hook: Hook) -> dict[str, Any]:
        quota = self._emulator.quota(hook)
        return {
            "id": hook.id,
            "used_hour": quota.used_hour,
            "used_day": quota.used_day,
            "remaining": quota.remaining,
        }

    def render_index(self) -> str:
        """The overview: settings, faults, and each Desktop with its latest messages."""
        names = self._emulator.desktops()
        sections = [self._desktop_section(name, _LATEST, link=True) for name in names]
        if not sections:
            sections = ['<section><p class="empty">No Desktop has a hook yet.</p></section>']
        return self._document("Desktops", "\n".join(sections))

    def render_desktop(self, name: str) -> str:
        """One Desktop's page, with up to 500 of its messages, newest first."""
        body = '<p><a href="/">All Desktops</a></p>' + self._desktop_section(name, _FULL)
        return self._document(name, body)

    def _document(self, title: str, body: str) -> str:
        emulator = self._emulator
        settings = (
            f"{_e(emulator.window)} window · {emulator.per_hour} requests per hour · "
            f"{emulator.per_day} per day · fault rate {emulator.fault_rate:g} · "
            f"latency {emulator.latency:g} s"
        )
        note = f'<p class="meta">{_e(self._note)}</p>' if self._note else ""
        return (
            "<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="{self._refresh:g}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)} · Hook API emulator</title><style>{_STYLE}</style></head>\n"
            "<body><header><h1>Hook API emulator</h1>"
            f'<p class="meta">{settings}</p>{note}{self._faults_line()}</header>\n'
            f"<main>{body}</main></body></html>\n"
        )

    def _faults_line(self) -> str:
        emulator = self._emulator
        injected = emulator.faults_injected
        shown = ", ".join(f"{_e(kind)} &times; {count}" for kind, count in sorted(injected.items()))
        pending = len(emulator.pending_faults())
        text = f"Faults injected: {shown or 'none'}"
        if pending:
            text += f" · {pending} scripted fault{'s' if pending != 1 else ''} still to come"
        return f'<p class="faults">{text}</p>'

    def _desktop_section(self, name: str, limit: int, *, link: bool = False) -> str:
        hooks = self._hooks(name)
        messages = [m for m in self._emulator.messages() if m.desktop == name]
        title = _e(name)
        if link:
            title = f'<a href="/desktops/{_e(quote(name, safe=""))}">{title}</a>'
        count = len(messages)
        heading = f'<h2>{title}</h2><p class="meta">{count} message{"s" if count != 1 else ""}'
        if count > limit:
            heading += f", the latest {limit} shown"
        if count > 1:
            heading += ", newest first"
        heading += "</p>"
        quotas = "".join(self._quota_line(hook) for hook in hooks)
        return (
            f"<section>{heading}{quotas}"
            f"{self._message_list(list(reversed(messages[-limit:])))}</section>"
        )

    def _quota_line(self, hook: Hook) -> str:
        quota = self._emulator.quota(hook)
        return (
            f'<p class="quota">Hook <code>{_e(hook.id)}</code>: '
            f"{quota.used_hour} of {quota.per_hour} used this hour, "
            f"{quota.used_day} of {quota.per_day} today, {quota.remaining} left</p>"
        )

    def _message_list(self, messages: list[PostedMessage]) -> str:
        if not messages:
            return '<p class="empty">No message yet.</p>'
        items = "".join(
            f'<li>{_time(m.received_at)}<span class="text">{_e(m.text)}</span></li>'
            for m in messages
        )
        return f"<ol>{items}</ol>"


async def _respond(send: Send, scope: Scope, status: int, content_type: bytes, body: bytes) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", b"%d" % len(body)),
        *_SECURITY_HEADERS,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
