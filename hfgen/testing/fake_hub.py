"""A small Hub-compatible HTTP server on loopback, for testing push and pull through the real client.

It speaks the part of the Hub API that ``huggingface_hub`` uses to create repositories, commit
files (every preupload is answered ``uploadMode: "regular"``, so file contents arrive base64 in the
NDJSON commit and no LFS or Xet storage is needed) and download them again (``resolve``, repo
info, tree listing, paths-info). Repositories live in memory, one snapshot per commit, addressed
by 40-hex commit hashes as the client's cache expects.

Use it as a context manager::

    with FakeHub() as hub:            # listens on 127.0.0.1:<free port>
        os.environ["HF_ENDPOINT"] = hub.endpoint   # before huggingface_hub is imported

The server answers only on 127.0.0.1 and only while the context is open.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


class _Repo:
    def __init__(self):
        self.commits: list[tuple[str, dict[str, bytes]]] = []  # (sha, files) oldest first

    @property
    def head(self) -> tuple[str, dict[str, bytes]]:
        return self.commits[-1]

    def snapshot(self, revision: str | None) -> tuple[str, dict[str, bytes]] | None:
        if revision in (None, "main"):
            return self.head
        for sha, files in self.commits:
            if sha == revision:
                return sha, files
        return None


def _git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """An in-memory Hub on ``127.0.0.1``; ``endpoint`` is its base URL."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"`host` must be a loopback address, got {host!r}.")
        self.repos: dict[tuple[str, str], _Repo] = {}  # (repo_type, repo_id) -> repo
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ repository ops

    def _create(self, repo_type: str, repo_id: str) -> bool:
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                return False
            repo = _Repo()
            repo.commits.append((hashlib.sha1(f"init {repo_id}".encode()).hexdigest(), {}))
            self.repos[(repo_type, repo_id)] = repo
            return True

    def _commit(self, repo_type: str, repo_id: str, lines: list[dict]) -> str:
        with self._lock:
            repo = self.repos[(repo_type, repo_id)]
            files = dict(repo.head[1])
            for line in lines:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            digest = hashlib.sha1(repo.head[0].encode())
            for path in sorted(files):
                digest.update(path.encode() + b"\0" + _git_blob_sha(files[path]).encode())
            sha = digest.hexdigest()
            repo.commits.append((sha, files))
            return sha

    # ------------------------------------------------------------------------------------- handler

    def _handler_class(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            # helpers -------------------------------------------------------------------------
            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _json(self, status: int, obj, headers: dict | None = None):
                self._send(status, json.dumps(obj).encode(), headers)

            def _error(self, status: int, code: str, message: str):
                self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _repo(self, repo_type: str, repo_id: str):
                repo = hub.repos.get((repo_type, repo_id))
                if repo is None:
                    self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                return repo

            def _snapshot(self, repo, revision):
                snap = repo.snapshot(unquote(revision) if revision else None)
                if snap is None:
                    self._error(404, "RevisionNotFound", f"Revision {revision} not found")
                return snap

            @staticmethod
            def _entries(files: dict[str, bytes], prefix: str, recursive: bool):
                prefix = prefix.strip("/")
                out, folders = [], set()
                for path in sorted(files):
                    if prefix and not path.startswith(prefix + "/"):
                        continue
                    rest = path[len(prefix) + 1:] if prefix else path
                    if "/" in rest and not recursive:
                        folders.add((prefix + "/" if prefix else "") + rest.split("/")[0])
                        continue
                    if recursive:
                        parts = rest.split("/")[:-1]
                        for i in range(1, len(parts) + 1):
                            folders.add((prefix + "/" if prefix else "") + "/".join(parts[:i]))
                    out.append({"type": "file", "path": path, "oid": _git_blob_sha(files[path]), "size": len(files[path])})
                out += [{"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest()} for f in sorted(folders)]
                return out

            # routes ----------------------------------------------------------------------------
            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                if path == "/api/whoami-v2":
                    return self._json(200, {"type": "user", "name": "hfgen-ci", "fullname": "hfgen CI", "orgs": [], "auth": {"accessToken": {"role": "write"}}})
                m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/revision/(.+))?", path)
                if m:
                    repo = self._repo(_REPO_TYPES[m[1]], m[2])
                    if repo is None:
                        return
                    snap = self._snapshot(repo, m[3])
                    if snap is None:
                        return
                    sha, files = snap
                    return self._json(200, {"id": m[2], "modelId": m[2], "sha": sha, "private": False, "tags": [],
                                            "siblings": [{"rfilename": p, "size": len(d)} for p, d in sorted(files.items())]})
                m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
                if m:
                    repo = self._repo(_REPO_TYPES[m[1]], m[2])
                    if repo is None:
                        return
                    snap = self._snapshot(repo, m[3])
                    if snap is None:
                        return
                    query = urlparse(self.path).query
                    entries = self._entries(snap[1], m[4] or "", "recursive=true" in query.lower() or "recursive=1" in query)
                    if m[4] and not entries:
                        return self._error(404, "EntryNotFound", f"{m[4]} not found")
                    return self._json(200, entries)
                m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/refs", path)
                if m:
                    repo = self._repo(_REPO_TYPES[m[1]], m[2])
                    if repo is None:
                        return
                    return self._json(200, {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head[0]}], "tags": [], "converts": []})
                m = re.fullmatch(r"/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if m:
                    repo = self._repo(_REPO_TYPES.get(m[1] or "models", "model"), m[2])
                    if repo is None:
                        return
                    snap = self._snapshot(repo, m[3])
                    if snap is None:
                        return
                    sha, files = snap
                    if m[4] not in files:
                        return self._error(404, "EntryNotFound", f"{m[4]} does not exist at {m[3]}")
                    data = files[m[4]]
                    return self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{_git_blob_sha(data)}"'}, "application/octet-stream")
                self._error(404, "NotFound", f"no route for GET {path}")

            def do_POST(self):
                parsed = urlparse(self.path)
                path = unquote(parsed.path)
                hub.requests.append((self.command, path))
                body = self._body()
                if path == "/api/validate-yaml":
                    return self._json(200, {})
                if path == "/api/repos/create":
                    payload = json.loads(body or b"{}")
                    repo_type = payload.get("type") or "model"
                    repo_id = f"{payload.get('organization') or 'hfgen-ci'}/{payload['name']}"
                    created = hub._create(repo_type, repo_id)
                    prefix = "" if repo_type == "model" else f"{repo_type}s/"
                    if not created:
                        return self._error(409, "RepoExists", "You already created this repo")
                    return self._json(200, {"url": f"{hub.endpoint}/{prefix}{repo_id}", "name": repo_id})
                m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/preupload/(.+)", path)
                if m:
                    if self._repo(_REPO_TYPES[m[1]], m[2]) is None:
                        return
                    files = json.loads(body or b"{}").get("files", [])
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/paths-info/(.+)", path)
                if m:
                    repo = self._repo(_REPO_TYPES[m[1]], m[2])
                    if repo is None:
                        return
                    snap = self._snapshot(repo, m[3])
                    if snap is None:
                        return
                    content_type = self.headers.get("Content-Type", "")
                    if "json" in content_type:
                        wanted = json.loads(body or b"{}").get("paths", [])
                    else:
                        from urllib.parse import parse_qs

                        wanted = parse_qs(body.decode()).get("paths", [])
                    entries = [e for e in self._entries(snap[1], "", True) if e["path"] in wanted]
                    return self._json(200, entries)
                m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/commit/(.+)", path)
                if m:
                    repo_type = _REPO_TYPES[m[1]]
                    if self._repo(repo_type, m[2]) is None:
                        return
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    sha = hub._commit(repo_type, m[2], lines)
                    return self._json(200, {"commitUrl": f"{hub.endpoint}/{m[2]}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})
                self._error(404, "NotFound", f"no route for POST {path}")

            def do_DELETE(self):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                if path == "/api/repos/delete":
                    payload = json.loads(self._body() or b"{}")
                    key = (payload.get("type") or "model", f"{payload.get('organization') or 'hfgen-ci'}/{payload.get('name')}")
                    with hub._lock:
                        if hub.repos.pop(key, None) is None:
                            return self._error(404, "RepoNotFound", f"Repository {key[1]} not found")
                    return self._json(200, {})
                self._error(404, "NotFound", f"no route for DELETE {path}")

        return Handler
