"""A tiny Hugging Face Hub look-alike on 127.0.0.1 for tests: just the HTTP endpoints `huggingface_hub` calls to
create a model repo, commit files to it and download them again.

The real `huggingface_hub` client does everything else (caching, revisions, offline mode, errors), so a round trip
through this server exercises the same code paths as the real Hub. What it answers:

* ``POST /api/repos/create``                                   create a model repo (409 when it exists)
* ``POST /api/validate-yaml``                                  README metadata: types and the `model-index` schema
* ``GET  /api/whoami-v2``                                      who the token belongs to
* ``POST /api/models/{repo}/preupload/{rev}``                  every file is a "regular" (inline) upload: no LFS, no Xet
* ``POST /api/models/{repo}/commit/{rev}``                     NDJSON commit: header, file, deletedFile, deletedFolder
* ``GET  /api/models/{repo}[/revision/{rev}]``                 model info with `sha` and `siblings`
* ``GET  /api/models/{repo}/tree/{rev}[/{path}]``              file listing (one page)
* ``POST /api/models/{repo}/paths-info/{rev}``                 metadata of given paths
* ``GET  /api/models/{repo}/refs``                             branches
* ``HEAD|GET /{repo}/resolve/{rev}/{path}``                    file content with `X-Repo-Commit` and `ETag` headers

Repos live in memory. Revisions are the branch ``main`` or any full commit hash. Private repos need a known token;
writing always does. Errors carry the `X-Error-Code` headers the client turns into its typed exceptions
(`RepositoryNotFoundError`, `RevisionNotFoundError`, `EntryNotFoundError`).

Run it alone with ``python tests/hub_server.py`` (a free port; ``--port N`` for a fixed one) and point
``HF_ENDPOINT`` at the URL it prints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

WRITE_TOKEN = "hf_fakehub_write_token"
USER = "tester"


def git_blob_sha1(content: bytes) -> str:
    """The git object id of a file, which the Hub uses as the ETag of regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    title: str
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        sha = self.branches.get(revision, revision)
        for commit in self.commits:
            if commit.sha == sha:
                return commit
        return None


class HubState:
    """All repos, guarded by one lock (requests are served from several threads)."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path) log, for tests that check what was called

    def create(self, repo_id: str, private: bool) -> bool:
        with self.lock:
            if repo_id in self.repos:
                return False
            repo = Repo(repo_id, private)
            # The Hub creates a repo with an initial commit holding .gitattributes.
            initial = Commit(
                self._new_sha(repo_id, "init"),
                {".gitattributes": b"*.safetensors filter=lfs\n"},
                "initial commit",
                _now(),
            )
            repo.commits.append(initial)
            repo.branches["main"] = initial.sha
            self.repos[repo_id] = repo
            return True

    def commit(self, repo: Repo, branch: str, operations: list[dict], title: str) -> Commit:
        with self.lock:
            parent = repo.resolve(branch)
            files = dict(parent.files) if parent else {}
            for key, value in operations:
                if key == "file":
                    content = (
                        base64.b64decode(value["content"])
                        if value.get("encoding") == "base64"
                        else value["content"].encode()
                    )
                    files[value["path"]] = content
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: c for p, c in files.items() if not p.startswith(prefix)}
            commit = Commit(self._new_sha(repo.repo_id, title), files, title, _now())
            repo.commits.append(commit)
            repo.branches[branch] = commit.sha
            return commit

    @staticmethod
    def _new_sha(repo_id: str, salt: str) -> str:
        return hashlib.sha1(f"{repo_id}\0{salt}\0{time.time_ns()}".encode()).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def validate_card_metadata(content: str) -> list[str]:
    """Checks a README's YAML front matter the way the Hub's validate-yaml endpoint does for the fields model cards
    use: types of the common keys and the `model-index` schema. Returns error messages (none when valid)."""
    import yaml

    if not content.startswith("---"):
        return []
    try:
        meta = yaml.safe_load(content.split("---", 2)[1]) or {}
    except (yaml.YAMLError, IndexError) as err:
        return [f"YAML front matter does not parse: {err}"]
    if not isinstance(meta, dict):
        return ["metadata must be a mapping"]
    errors = []
    for key in ("pipeline_tag", "library_name", "license", "model_name"):
        if key in meta and not isinstance(meta[key], str):
            errors.append(f'"{key}" must be a string')
    for key in ("tags", "datasets", "language"):
        value = meta.get(key)
        if value is not None and not (
            isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            errors.append(f'"{key}" must be a string or a list of strings')
    for i, model in enumerate(meta.get("model-index") or []):
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            errors.append(f'"model-index[{i}].name" must be a string')
            continue
        for j, result in enumerate(model.get("results") or []):
            where = f"model-index[{i}].results[{j}]"
            if not isinstance((result.get("task") or {}).get("type"), str):
                errors.append(f'"{where}.task.type" must be a string')
            dataset = result.get("dataset") or {}
            if not isinstance(dataset.get("name"), str) or not isinstance(dataset.get("type"), str):
                errors.append(f'"{where}.dataset" needs string "name" and "type"')
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                errors.append(f'"{where}.metrics" must be a non-empty list')
                continue
            for k, metric in enumerate(metrics):
                if not isinstance(metric.get("type"), str) or "value" not in metric:
                    errors.append(f'"{where}.metrics[{k}]" needs a string "type" and a "value"')
    return errors


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra or {}


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HubState  # set on the subclass made by FakeHub

    # ----------------------------------------------------------------------------------------- plumbing

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    def _dispatch(self, method: str):
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        self.state.requests.append((method, path))
        body = b""
        if method == "POST":
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            self._route(method, path, query, body)
        except _HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            self._send(
                err.status, json.dumps({"error": err.message, **err.extra}).encode(), headers, head=method == "HEAD"
            )

    do_GET = lambda self: self._dispatch("GET")  # noqa: E731
    do_HEAD = lambda self: self._dispatch("HEAD")  # noqa: E731
    do_POST = lambda self: self._dispatch("POST")  # noqa: E731

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict | None = None,
        head: bool = False,
        content_type: str = "application/json",
    ):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, payload, headers: dict | None = None):
        self._send(200, json.dumps(payload).encode(), headers)

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return USER if auth == f"Bearer {WRITE_TOKEN}" else None

    def _repo(self, repo_id: str, write: bool = False) -> Repo:
        repo = self.state.repos.get(repo_id)
        user = self._user()
        if write and user is None:
            raise _HubError(401, "Invalid credentials in Authorization header")
        if repo is None or (repo.private and user is None):
            # Like the Hub: a private repo looks missing to strangers.
            raise _HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # --------------------------------------------------------------------------------------------- routes

    def _route(self, method: str, path: str, query: dict, body: bytes):
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "whoami-v2"]:
            if self._user() is None:
                raise _HubError(401, "Invalid credentials in Authorization header")
            return self._json(
                {
                    "type": "user",
                    "name": USER,
                    "orgs": [],
                    "auth": {"accessToken": {"role": "write", "displayName": "test"}},
                }
            )
        if parts[:2] == ["api", "validate-yaml"] and method == "POST":
            errors = validate_card_metadata(json.loads(body).get("content", ""))
            return self._send(
                400 if errors else 200,
                json.dumps({"errors": [{"message": e} for e in errors], "warnings": []}).encode(),
            )
        if parts[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo(json.loads(body or b"{}"))
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:
            repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
            return self._api_model(method, repo_id, rest, query, body)
        if len(parts) >= 5 and parts[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        raise _HubError(404, f"no route for {method} {path}")

    def _create_repo(self, payload: dict):
        if self._user() is None:
            raise _HubError(401, "Invalid credentials in Authorization header")
        if payload.get("type") not in (None, "model"):
            raise _HubError(400, "this test hub only hosts model repos")
        namespace = payload.get("organization") or USER
        repo_id = f"{namespace}/{payload['name']}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        if not self.state.create(repo_id, private):
            # The Hub answers a conflict with the repo's url, which `create_repo(exist_ok=True)` returns.
            raise _HubError(409, "You already created this model repo", extra={"url": f"{self._base()}/{repo_id}"})
        return self._json({"url": f"{self._base()}/{repo_id}", "name": repo_id})

    def _api_model(self, method: str, repo_id: str, rest: list[str], query: dict, body: bytes):
        if method == "GET" and (not rest or rest[0] == "revision"):
            repo = self._repo(repo_id)
            commit = self._commit(repo, rest[1] if len(rest) > 1 else "main")
            return self._json(self._model_info(repo, commit))
        if method == "GET" and rest[:1] == ["refs"]:
            repo = self._repo(repo_id)
            branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo.branches.items()]
            return self._json({"branches": branches, "tags": [], "converts": []})
        if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
            repo = self._repo(repo_id)
            commit = self._commit(repo, rest[1])
            prefix = "/".join(rest[2:]).strip("/")
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._json(self._tree(commit, prefix, recursive))
        if method == "POST" and rest[:1] == ["paths-info"] and len(rest) >= 2:
            repo = self._repo(repo_id)
            commit = self._commit(repo, rest[1])
            form = parse_qs(body.decode()) if body else {}
            if not form and body:
                form = {"paths": json.loads(body).get("paths", [])}
            wanted = set(form.get("paths", []))
            entries = [e for e in self._tree(commit, "", True) if e["path"] in wanted]
            return self._json(entries)
        if method == "POST" and rest[:1] == ["preupload"] and len(rest) >= 2:
            repo = self._repo(repo_id, write=True)
            commit = self._commit(repo, rest[1])
            files = json.loads(body)["files"]
            answer = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(commit.files[f["path"]]) if f["path"] in commit.files else None,
                }
                for f in files
            ]
            return self._json({"files": answer, "commitOid": commit.sha})
        if method == "POST" and rest[:1] == ["commit"] and len(rest) >= 2:
            repo = self._repo(repo_id, write=True)
            branch = rest[1]
            if branch not in repo.branches:
                raise _HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            if "create_pr" in query:
                raise _HubError(400, "this test hub does not do pull requests")
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next((entry["value"] for entry in lines if entry["key"] == "header"), {})
            operations = [(entry["key"], entry["value"]) for entry in lines if entry["key"] != "header"]
            if any(key == "lfsFile" for key, _ in operations):
                raise _HubError(400, "this test hub only accepts regular (inline) files")
            commit = self.state.commit(repo, branch, operations, header.get("summary", "commit"))
            return self._json(
                {
                    "commitUrl": f"{self._base()}/{repo_id}/commit/{commit.sha}",
                    "commitOid": commit.sha,
                    "pullRequestUrl": None,
                }
            )
        raise _HubError(404, f"no route for {method} /api/models/{repo_id}/{'/'.join(rest)}")

    def _model_info(self, repo: Repo, commit: Commit) -> dict:
        return {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.commits[0].date,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "library_name": None,
            "pipeline_tag": None,
            "siblings": [
                {"rfilename": p, "size": len(c), "blobId": git_blob_sha1(c)} for p, c in sorted(commit.files.items())
            ],
        }

    @staticmethod
    def _tree(commit: Commit, prefix: str, recursive: bool) -> list[dict]:
        entries, folders = [], set()
        for path, content in sorted(commit.files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            relative = path[len(prefix) + 1 :] if prefix else path
            pieces = relative.split("/")
            for depth in range(1, len(pieces)):
                folder = "/".join(([prefix] if prefix else []) + pieces[:depth])
                if recursive or depth == 1:
                    folders.add(folder)
            if recursive or len(pieces) == 1:
                entries.append({"type": "file", "oid": git_blob_sha1(content), "size": len(content), "path": path})
        entries += [
            {"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
            for f in sorted(folders)
        ]
        return entries

    def _resolve(self, method: str, repo_id: str, revision: str, filename: str):
        repo = self._repo(repo_id)
        commit = self._commit(repo, revision)
        if filename not in commit.files:
            raise _HubError(404, f"Entry not found: {filename}", "EntryNotFound")
        content = commit.files[filename]
        headers = {
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{git_blob_sha1(content)}"',
            "Accept-Ranges": "bytes",
            "Last-Modified": formatdate(usegmt=True),
        }
        status, start = 200, 0
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes=") and method == "GET":  # resumed downloads
            start = int(wanted[6:].split("-")[0] or 0)
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
            status = 206
        self._send(status, content[start:], headers, head=method == "HEAD", content_type="application/octet-stream")


class FakeHub:
    """A Hub look-alike serving in a background thread: ``with FakeHub() as hub: ... hub.url ...``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.state = HubState()
        handler = type("BoundHubHandler", (HubHandler,), {"state": self.state})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-hub", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    args = parser.parse_args()
    hub = FakeHub(port=args.port)
    print(f"fake hub on {hub.url}; write token {WRITE_TOKEN}", flush=True)
    try:
        hub.server.serve_forever()
    except KeyboardInterrupt:
        pass
