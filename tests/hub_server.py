"""A small Hugging Face Hub-compatible server on loopback, for publishing tests.

huggingface_hub 2.4 speaks HTTP through `httpx2`, which `respx` cannot intercept, and the real Hub is out of reach in
tests, so `HubServer` answers the few endpoints that `HfApi.create_repo`, `HfApi.upload_file` / `upload_folder` /
`create_commit`, `hf_hub_download`, `datasets.load_dataset("org/name")` and `from_pretrained("org/name")` call:

| method | path | used by |
| --- | --- | --- |
| POST | `/api/repos/create` | `create_repo` (409 with the repo's `url` when it exists) |
| POST | `/api/validate-yaml` | `create_commit` when the commit holds a `README.md` |
| POST | `/api/{type}s/{repo_id}/preupload/{rev}` | upload mode per file (`lfs` for binary files) |
| POST | `/{prefix}{repo_id}.git/info/lfs/objects/batch` | LFS batch: `basic` PUT actions back to this server |
| PUT | `/lfs-objects/{sha256}` | the LFS upload itself (the sha256 is checked) |
| POST | `/api/{type}s/{repo_id}/commit/{rev}` | the ndjson commit: `header`, `file` (base64), `lfsFile`, deletions |
| GET | `/api/{type}s/{repo_id}` and `.../revision/{rev}` | repo info, with `sha` and `siblings` |
| GET | `/api/{type}s/{repo_id}/tree/{rev}[/{path}]` | tree listing (`recursive=1`; one page) |
| POST | `/api/{type}s/{repo_id}/paths-info/{rev}` | info on given paths |
| GET, HEAD | `/{prefix}{repo_id}/resolve/{rev}/{path}` | downloads: `ETag`, `X-Repo-Commit`, `Content-Length`, `Range` |

`{type}` is `model`, `dataset` or `space`; `{prefix}` is empty for models, `datasets/` or `spaces/` otherwise. With
`token=...`, writes (and reads of private repos) need `Authorization: Bearer <token>`, else 401. Every request is
recorded in `HubServer.requests` (method, path, headers, body), and `HubServer.unhandled` lists the requests that got a
404 for want of a route, which is how to find what a new client version calls. Storage is in memory: each commit keeps
a full snapshot of the repo's files, so any commit sha can be resolved.

Only the standard library is imported, so that pytest's doctest collection of `tests/` stays cheap.

Example:

```python
>>> import json, urllib.request
>>> with HubServer() as server:
...     request = urllib.request.Request(
...         f"{server.endpoint}/api/repos/create",
...         data=json.dumps({"name": "tiny", "organization": "org", "type": "dataset"}).encode(),
...         method="POST",
...     )
...     json.load(urllib.request.urlopen(request))["url"] == f"{server.endpoint}/datasets/org/tiny"
True

```
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


REPO_TYPES = ("model", "dataset", "space")
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
#: files whose name ends so, or whose first bytes hold a NUL byte, go through LFS (the Hub decides by `.gitattributes`).
LFS_SUFFIXES = (".parquet", ".arrow", ".safetensors", ".bin", ".pt", ".pth", ".png", ".jpg", ".jpeg", ".npy", ".zip")
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES).encode()


def git_blob_sha(content: bytes) -> str:
    """The git object id of a blob, as the Hub reports it for regular files.

    >>> git_blob_sha(b"")
    'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    """
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass
class StoredFile:
    content: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def blob_id(self) -> str:
        """The git object id: of the content for a regular file, of the pointer for an LFS file."""
        return git_blob_sha(lfs_pointer(self.sha256, len(self.content)) if self.lfs else self.content)

    def tree_entry(self, path: str) -> dict:
        entry = {"type": "file", "oid": self.blob_id, "size": len(self.content), "path": path}
        if self.lfs:
            pointer_size = len(lfs_pointer(self.sha256, len(self.content)))
            entry["lfs"] = {"oid": self.sha256, "size": len(self.content), "pointerSize": pointer_size}
        return entry


@dataclass
class Commit:
    oid: str
    title: str
    description: str
    files: dict[str, StoredFile]
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        oid = self.branches.get(revision.removeprefix("refs/heads/"), revision)
        return next((commit for commit in self.commits if commit.oid == oid), None)


class HubError(Exception):
    def __init__(self, status: int, message: str, error_code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HubServer:
    """A Hub-compatible HTTP server on `127.0.0.1:<free port>`, run in a thread; use it as a context manager.

    Args:
        token (`str`, *optional*, defaults to `None`):
            When set, writes and reads of private repos need `Authorization: Bearer <token>`.
    """

    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[str] = []
        self._lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------------------------------------- lifecycle
    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            raise RuntimeError("HubServer is not started; use `with HubServer() as server:`")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------------------- helpers
    def environ(self, token: str | None = None) -> dict[str, str]:
        """Environment variables pointing a fresh huggingface_hub process at this server (set them before import)."""
        env = {
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
        if token or self.token:
            env["HF_TOKEN"] = token or self.token
        return env

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The files of a repo at a revision: path -> content."""
        commit = self._repo(repo_type, repo_id).resolve(revision)
        return {path: stored.content for path, stored in commit.files.items()}

    def commits(self, repo_id: str, repo_type: str = "model") -> list[Commit]:
        return list(self._repo(repo_type, repo_id).commits)

    def stored_bytes(self) -> list[bytes]:
        """Everything the server stores (file contents, LFS objects, commit messages), to look for leaked secrets."""
        with self._lock:
            blobs = list(self.lfs_objects.values())
            for repo in self.repos.values():
                for commit in repo.commits:
                    blobs.append(f"{commit.title}\n{commit.description}".encode())
                    blobs.extend(stored.content for stored in commit.files.values())
        return blobs

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository Not Found for url: {repo_type}s/{repo_id}.", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, title: str, description: str, files: dict[str, StoredFile]) -> Commit:
        commit = Commit(
            oid=hashlib.sha1(uuid.uuid4().bytes).hexdigest(),
            title=title,
            description=description,
            files=files,
            date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        )
        repo.commits.append(commit)
        return commit

    def repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}"


class _Handler(BaseHTTPRequestHandler):
    server_hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet; requests are recorded in `HubServer.requests`
        pass

    # ------------------------------------------------------------------------------------------------------ plumbing
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict[str, str] | None = None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _handle(self, method: str):
        hub = self.server_hub
        body = self._read_body() if method in ("POST", "PUT") else b""
        url = urlsplit(self.path)
        with hub._lock:
            hub.requests.append(RecordedRequest(method, url.path, dict(self.headers.items()), body))
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        try:
            for pattern, route_method, name in _ROUTES:
                if route_method != method and not (route_method == "GET" and method == "HEAD"):
                    continue
                match = pattern.fullmatch(url.path)
                if match:
                    params = {key: unquote(value) if value else value for key, value in match.groupdict().items()}
                    return getattr(self, name)(method=method, body=body, query=query, **params)
            hub.unhandled.append(f"{method} {self.path}")
            raise HubError(404, f"No route for {method} {url.path}", "EntryNotFound")
        except HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.error_code:
                headers["X-Error-Code"] = err.error_code
            self._send(err.status, json.dumps({"error": err.message}).encode(), headers, head=method == "HEAD")

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    # ---------------------------------------------------------------------------------------------------------- auth
    def _authorised(self) -> bool:
        token = self.server_hub.token
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    def _check_write(self):
        if not self._authorised():
            raise HubError(401, "Invalid credentials in Authorization header", "Unauthorized")

    def _readable_repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.server_hub._repo(repo_type, repo_id)
        if repo.private and not self._authorised():
            # the Hub answers 401 for private repos, exactly as for missing ones
            raise HubError(401, f"Repository Not Found for url: {repo_type}s/{repo_id}.", "RepoNotFound")
        return repo

    def _commit_at(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # -------------------------------------------------------------------------------------------------------- routes
    def create_repo(self, body: bytes, **_):
        self._check_write()
        hub = self.server_hub
        payload = json.loads(body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"Invalid repo type {repo_type!r}")
        url = hub.repo_url(repo_type, repo_id)
        with hub._lock:
            if (repo_type, repo_id) in hub.repos:
                return self._json(409, {"error": "You already created this repo", "url": url})
            repo = Repo(repo_type, repo_id, private=payload.get("visibility", "public") == "private")
            commit = hub._commit(repo, "initial commit", "", {".gitattributes": StoredFile(GITATTRIBUTES, lfs=False)})
            repo.branches["main"] = commit.oid
            hub.repos[(repo_type, repo_id)] = repo
        self._json(200, {"url": url, "name": repo_id, "id": uuid.uuid4().hex[:24]})

    def validate_yaml(self, body: bytes, **_):
        payload = json.loads(body)
        if not isinstance(payload.get("content"), str):
            raise HubError(400, "`content` must be a string")
        self._json(200, {"errors": [], "warnings": []})

    def preupload(self, repo_type: str, repo_id: str, revision: str, body: bytes, **_):
        self._check_write()
        repo = self.server_hub._repo(repo_type, repo_id)
        commit = self._commit_at(repo, revision)
        files = []
        for entry in json.loads(body)["files"]:
            sample = base64.b64decode(entry["sample"])
            lfs = entry["path"].lower().endswith(LFS_SUFFIXES) or b"\0" in sample
            existing = commit.files.get(entry["path"])
            oid = None
            if existing is not None:
                oid = existing.sha256 if existing.lfs else git_blob_sha(existing.content)
            files.append(
                {"path": entry["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        self._json(200, {"files": files, "commitOid": commit.oid})

    def lfs_batch(self, prefix: str | None, repo_id: str, body: bytes, **_):
        self._check_write()
        hub = self.server_hub
        hub._repo({"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model"), repo_id)
        payload = json.loads(body)
        if payload.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported")
        objects = []
        for obj in payload["objects"]:
            answer = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in hub.lfs_objects:
                answer["actions"] = {"upload": {"href": f"{hub.endpoint}/lfs-objects/{obj['oid']}"}}
            objects.append(answer)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def lfs_put(self, oid: str, body: bytes, **_):
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, f"sha256 mismatch for LFS object {oid}")
        with self.server_hub._lock:
            self.server_hub.lfs_objects[oid] = body
        self._send(200)

    def commit(self, repo_type: str, repo_id: str, revision: str, body: bytes, query: dict, **_):
        self._check_write()
        hub = self.server_hub
        if query.get("create_pr"):
            raise HubError(400, "HubServer does not support pull requests")
        with hub._lock:
            repo = hub._repo(repo_type, repo_id)
            branch = revision.removeprefix("refs/heads/")
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            files = dict(repo.resolve(branch).files)
            header = {}
            for line in body.splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    header = value
                    parent = value.get("parentCommit")
                    if parent and parent != repo.branches[branch]:
                        raise HubError(412, "A commit has happened since. Please refresh and try again.")
                elif key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                    files[value["path"]] = StoredFile(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    content = hub.lfs_objects.get(value["oid"])
                    if content is None:
                        raise HubError(422, f"LFS object {value['oid']} was never uploaded ({value['path']})")
                    files[value["path"]] = StoredFile(content, lfs=True)
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {path: stored for path, stored in files.items() if not path.startswith(folder)}
                else:
                    raise HubError(400, f"HubServer does not support commit operation {key!r}")
            commit = hub._commit(repo, header.get("summary", ""), header.get("description", ""), files)
            repo.branches[branch] = commit.oid
        url = f"{hub.repo_url(repo_type, repo_id)}/commit/{commit.oid}"
        self._json(200, {"commitUrl": url, "commitOid": commit.oid, "pullRequestUrl": None, "success": True})

    def repo_info(self, repo_type: str, repo_id: str, revision: str | None, **_):
        repo = self._readable_repo(repo_type, repo_id)
        commit = self._commit_at(repo, revision or "main")
        info = {
            "_id": hashlib.md5(f"{repo_type}/{repo_id}".encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "lastModified": commit.date,
            "createdAt": repo.commits[0].date,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        self._json(200, info)

    def _entries(self, commit: Commit, recursive: bool, base: str) -> list[dict]:
        base = base.strip("/")
        prefix = f"{base}/" if base else ""
        if base and base in commit.files:
            return [commit.files[base].tree_entry(base)]
        entries, directories = [], set()
        for path in sorted(commit.files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                directories.add(prefix + "/".join(parts[:depth]))
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                entries.append(commit.files[path].tree_entry(path))
        if base and not entries and not directories:
            raise HubError(404, f"Entry not found: {base}", "EntryNotFound")
        if not recursive:
            directories = {d for d in directories if "/" not in d[len(prefix) :]}
        folders = [{"type": "directory", "oid": git_blob_sha(d.encode()), "size": 0, "path": d} for d in directories]
        return sorted(folders, key=lambda e: e["path"]) + entries

    def tree(self, repo_type: str, repo_id: str, revision: str, path: str | None, query: dict, **_):
        repo = self._readable_repo(repo_type, repo_id)
        commit = self._commit_at(repo, revision)
        recursive = query.get("recursive", "false").lower() in ("1", "true")
        self._json(200, self._entries(commit, recursive, path or ""))

    def paths_info(self, repo_type: str, repo_id: str, revision: str, body: bytes, **_):
        repo = self._readable_repo(repo_type, repo_id)
        commit = self._commit_at(repo, revision)
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type:
            paths = json.loads(body).get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        entries = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                entries.append(commit.files[path].tree_entry(path))
            elif any(p.startswith(path + "/") for p in commit.files):
                entries.append({"type": "directory", "oid": git_blob_sha(path.encode()), "size": 0, "path": path})
        self._json(200, entries)

    def resolve(self, method: str, prefix: str | None, repo_id: str, revision: str, path: str, **_):
        repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
        repo = self._readable_repo(repo_type, repo_id)
        commit = self._commit_at(repo, revision)
        stored = commit.files.get(path)
        if stored is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        etag = stored.sha256 if stored.lfs else git_blob_sha(stored.content)
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{etag}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
        }
        if stored.lfs:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(len(stored.content))
        content, status = stored.content, 200
        range_header = self.headers.get("Range")
        if range_header and (match := re.fullmatch(r"bytes=(\d*)-(\d*)", range_header.strip())):
            start = int(match[1]) if match[1] else max(len(content) - int(match[2] or 0), 0)
            end = int(match[2]) if match[1] and match[2] else len(content) - 1
            end = min(end, len(content) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start : end + 1], 206
        self._send(status, content, headers, head=method == "HEAD")


_TYPE = r"(?P<repo_type>model|dataset|space)s"
_REPO = r"(?P<repo_id>[^/]+(?:/[^/]+)?)"
_PREFIX = r"(?P<prefix>datasets/|spaces/)?"
_ROUTES = [
    (re.compile(r"/api/repos/create"), "POST", "create_repo"),
    (re.compile(r"/api/validate-yaml"), "POST", "validate_yaml"),
    (re.compile(rf"/api/{_TYPE}/{_REPO}/preupload/(?P<revision>[^/]+)"), "POST", "preupload"),
    (re.compile(rf"/api/{_TYPE}/{_REPO}/commit/(?P<revision>[^/]+)"), "POST", "commit"),
    (re.compile(rf"/api/{_TYPE}/{_REPO}/paths-info/(?P<revision>[^/]+)"), "POST", "paths_info"),
    (re.compile(rf"/api/{_TYPE}/{_REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?"), "GET", "tree"),
    (re.compile(rf"/api/{_TYPE}/{_REPO}(?:/revision/(?P<revision>[^/]+))?"), "GET", "repo_info"),
    (re.compile(rf"/{_PREFIX}{_REPO}\.git/info/lfs/objects/batch"), "POST", "lfs_batch"),
    (re.compile(r"/lfs-objects/(?P<oid>[0-9a-f]{64})"), "PUT", "lfs_put"),
    (re.compile(rf"/{_PREFIX}{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)"), "GET", "resolve"),
]

__all__ = ["HubServer", "git_blob_sha"]
