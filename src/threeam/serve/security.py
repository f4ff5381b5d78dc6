"""What the server lets a client reach: paths under the root, upload sizes, Host and Origin headers.

* `resolve_under_root` is the only way a client-given path becomes a file: absolute paths, ``..``
  components, NUL bytes and anything whose real location (after following symlinks) is outside the
  root are refused with `AccessDenied` (HTTP 403) and a message that says why; a path that does not
  exist is `NotFoundError` (404).
* `BodyLimit` stops reading a request body once it passes the upload limit (413), whether or not
  the client sent a ``Content-Length``, so an oversized upload never reaches the disk in full.
* `HostOriginGuard` answers 400 to a ``Host`` header that is not the server's (DNS rebinding) and
  403 to a cross-site ``Origin`` on any request or WebSocket (another web page driving the API).
  The server's names are `allowed_host_names`: loopback, the bound address, ``--allowed-host``
  values and, when bound to every interface, this machine's own names (`local_host_names`); never
  "any host".

Nothing here (nor anywhere in `threeam.serve`) evaluates or unpickles client data: requests are
JSON validated by pydantic models, uploads are decoded by PIL / PyAV only.
"""
from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Iterable
from urllib.parse import urlsplit

from threeam.errors import InputError
from threeam.io.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

MAX_PATH_CHARS = 1024


class AccessDenied(InputError):
    """A path the client may not open (outside the root, absolute, with ``..``): HTTP 403."""


class NotFoundError(InputError):
    """A path under the root that does not exist, or an unknown session: HTTP 404."""


class TooLarge(InputError):
    """An upload or video over the configured limits: HTTP 413."""


_DRIVE = re.compile(r"^[A-Za-z]:")


def resolve_under_root(root: Path, rel: object) -> Path:
    """The real path of ``rel`` (relative to ``root``), refusing anything that leaves the root.

    Args:
        root: an existing folder, already resolved (``Path.resolve()``).
        rel: the client's path, e.g. ``"clips/cup.mp4"`` or ``"scenes/room1"`` (POSIX separators).

    Raises:
        AccessDenied: not a string, empty, too long, absolute, with a ``..`` component or a NUL
            byte, or resolving (through symlinks) to a place outside ``root``.
        NotFoundError: it does not exist.
    """
    if not isinstance(rel, str) or not rel.strip():
        raise AccessDenied("path must be a non-empty string relative to the served root")
    if len(rel) > MAX_PATH_CHARS:
        raise AccessDenied(f"path is longer than {MAX_PATH_CHARS} characters")
    if "\x00" in rel:
        raise AccessDenied("path contains a NUL byte")
    text = rel.replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text) or os.path.isabs(rel):
        raise AccessDenied(f"absolute paths are refused ({rel!r}); give a path relative to the served root")
    parts = PurePosixPath(text).parts
    if ".." in parts:
        raise AccessDenied(f"path {rel!r} contains '..'; only paths inside the served root can be opened")
    candidate = root.joinpath(*parts)
    try:
        real = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise NotFoundError(f"no such file or folder under the served root: {rel!r}") from None
    except (OSError, RuntimeError) as e:  # symlink loops, permission errors
        raise AccessDenied(f"cannot open {rel!r}: {e.__class__.__name__}") from None
    if not _inside(real, root):
        raise AccessDenied(f"path {rel!r} leads outside the served root (through a symlink); refused")
    return real


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def check_files_inside(files: Iterable[Path], root: Path) -> None:
    """Every file's real path is inside ``root`` (frames in a folder may be symlinks): else AccessDenied."""
    for f in files:
        if not _inside(Path(f).resolve(), root):
            raise AccessDenied(f"frame {Path(f).name!r} is a link to a file outside the served root; refused")


def list_videos(root: Path, max_depth: int = 3, limit: int = 500) -> list[dict]:
    """Videos under ``root``: video files and folders holding image frames, without leaving the root.

    Hidden entries (``.name``) and links that lead outside the root are skipped.

    Returns:
        ``[{"path": "rel/path", "kind": "file" | "frames", "frames": int | None}, ...]`` sorted by path,
        at most ``limit`` entries, at most ``max_depth`` folders deep.
    """
    out: list[dict] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        images = 0
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            p = Path(e.path)
            try:
                real = p.resolve()
            except (OSError, RuntimeError):
                continue
            if not _inside(real, root):
                continue
            if real.is_dir():
                subdirs.append(p)
            elif real.is_file():
                suffix = p.suffix.lower()
                if suffix in IMAGE_EXTENSIONS:
                    images += 1
                elif suffix in VIDEO_EXTENSIONS and len(out) < limit:
                    out.append({"path": p.relative_to(root).as_posix(), "kind": "file", "frames": None})
        if images and folder != root and len(out) < limit:
            out.append({"path": folder.relative_to(root).as_posix(), "kind": "frames", "frames": images})
        if depth < max_depth:
            for d in subdirs:
                if len(out) >= limit:
                    break
                walk(d, depth + 1)

    walk(root, 0)
    return sorted(out, key=lambda v: v["path"])[:limit]


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: object, index: int) -> str:
    """A file name that is safe to create in an upload folder: the base name only, restricted
    characters, never hidden; ``index`` makes it unique and keeps the upload order."""
    base = PurePosixPath(str(name or "").replace("\\", "/")).name
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    stem = _UNSAFE.sub("_", stem).strip("._")[:80] or "file"
    ext = _UNSAFE.sub("", ext)[:10].lower()
    return f"{index:05d}_{stem}" + (f".{ext}" if ext else "")


# ----------------------------------------------------------------------------- ASGI guards
async def _plain_response(send, status: int, message: str) -> None:
    import json

    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: requests whose body passes ``limit`` bytes get 413 (uploads: ``upload_limit``)."""

    def __init__(self, app, limit: int, upload_limit: int, upload_prefix: str = "/api/sessions/upload"):
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit
        self.upload_prefix = upload_prefix

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.upload_limit if scope["path"].startswith(self.upload_prefix) else self.limit
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    size = int(v)
                except ValueError:
                    return await _plain_response(send, 400, "invalid Content-Length header")
                if size > limit:
                    return await _plain_response(send, 413, _too_large(limit))
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(_too_large(limit))
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _plain_response(send, 413, _too_large(limit))
        except Exception as e:  # the body error may arrive wrapped (e.g. in an ExceptionGroup)
            if _caused_by_too_large(e) and not started:
                await _plain_response(send, 413, _too_large(limit))
            else:
                raise


def _caused_by_too_large(e: BaseException) -> bool:
    seen = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, BodyTooLarge):
            return True
        stack += [x.__cause__, x.__context__, *getattr(x, "exceptions", ())]
    return False


def _too_large(limit: int) -> str:
    return f"request body is larger than the limit of {limit / (1024 * 1024):.1f} MiB (see --max-upload-mb)"


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:port
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


WILDCARD_HOSTS = ("0.0.0.0", "::", "")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def local_host_names() -> set[str]:
    """Names a browser may use for this machine when the server listens on every interface.

    Loopback names, the host name and fully qualified name, every address they resolve to, and
    the address of the interface that holds the default route (found by connecting a UDP socket,
    which sends nothing). Lower case, IPv6 without brackets. Other addresses (a second network
    card, a name in DNS) must be given with ``--allowed-host``.
    """
    import socket

    names = set(LOOPBACK_NAMES)
    for name in {socket.gethostname(), socket.getfqdn()}:
        if not name:
            continue
        names.add(name.lower())
        try:
            for info in socket.getaddrinfo(name, None):
                names.add(str(info[4][0]).split("%", 1)[0].lower())
        except OSError:
            pass
    for family, probe in ((socket.AF_INET, ("192.0.2.1", 9)), (socket.AF_INET6, ("2001:db8::1", 9))):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(probe)
                names.add(str(s.getsockname()[0]).split("%", 1)[0].lower())
        except OSError:
            pass
    return names - set(WILDCARD_HOSTS)


def allowed_host_names(bind_host: str, extra: Iterable[str] = ()) -> set[str]:
    """The Host names the guard accepts: loopback, the bound address (or, for a wildcard bind,
    `local_host_names`) and ``extra`` (``--allowed-host``). A ``*`` is an `InputError`: every name
    has to be given, since accepting any Host turns the DNS-rebinding guard off."""
    extra = [str(h).strip().lower().strip("[]") for h in extra]
    if any(h in ("*", "") or "*" in h for h in extra):
        raise InputError("--allowed-host takes host names or addresses, not '*' (accepting any Host header "
                         "would let a DNS-rebinding page use the API); name each host")
    hosts = set(LOOPBACK_NAMES) | set(extra)
    bind = str(bind_host).strip().lower().strip("[]")
    if bind in WILDCARD_HOSTS:
        hosts |= local_host_names()
    else:
        hosts.add(bind)
    return hosts


class HostOriginGuard:
    """ASGI middleware: only our own Host names, and no cross-site Origin (HTTP and WebSocket)."""

    def __init__(self, app, allowed_hosts: Iterable[str]):
        self.app = app
        self.allowed = {h.lower().strip("[]") for h in allowed_hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = _host_name(headers.get("host", ""))
        if host not in self.allowed:
            return await self._refuse(scope, receive, send, 400, f"Host {host!r} is not served here "
                                      "(see --allowed-host)")
        origin = headers.get("origin")
        if origin is not None and (urlsplit(origin).netloc.lower() != headers.get("host", "").strip().lower()
                                   or _host_name(urlsplit(origin).netloc) not in self.allowed):
            return await self._refuse(scope, receive, send, 403,
                                      f"cross-origin request from {origin[:80]!r} refused (only this page may use the API)")
        return await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope, receive, send, status: int, message: str) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        await _plain_response(send, status, message)
