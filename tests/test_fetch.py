"""`mathdistill data fetch` against a loopback HTTP server (no network): files land in the
layout the loaders read, checked against their recorded SHA-256; a wrong checksum, an
interrupted download, a server that ignores ranges, a 404 and a user's own differing file each
end as the module's contract says, with nothing half-written in place."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from distill.cli import app
from distill.data import dataset_names, get_loader
from distill.data.fetch import (
    BASE_URL_ENV,
    LICENCES,
    UpstreamFile,
    fetch,
    fetchable_datasets,
    upstream_files,
)


class FileServer:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1 with ``Range: bytes=N-`` support.
    ``cut[path] = n``: the next response for ``path`` sends its headers and only ``n`` bytes of
    the body, then closes the connection. ``ignore_range``: answer every request whole (200).
    ``requests`` records (path, Range header) of every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    if start >= len(body):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                limit = server.cut.pop(self.path, None)
                self.wfile.write(part if limit is None else part[:limit])
                if limit is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def _spec(file: str, body: bytes, *, path: str | None = None, member: str = "",
          datasets: tuple[str, ...] = ("toy",)) -> UpstreamFile:
    return UpstreamFile(datasets=datasets, file=file, repository="someone/toy", commit="c0ffee",
                        path=path or file, member=member, size=len(body),
                        sha256=hashlib.sha256(body).hexdigest())


def _serve(server: FileServer, spec: UpstreamFile, body: bytes) -> None:
    server.files[f"/{spec.repository}/{spec.commit}/{spec.path}"] = body


def _zip(name: str, body: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, body)
    return buf.getvalue()


TRAIN = b"".join(b'{"question": "q%d", "answer": "#### %d"}\n' % (i, i) for i in range(3000))
TEST = b'{"question": "q", "answer": "#### 1"}\n'
BIG = bytes(range(256)) * 400  # 102,400 bytes


def _no_sleep(_: float) -> None:
    pass


def test_fetches_plain_files_and_zip_members_then_leaves_them_alone(server, tmp_path) -> None:
    specs = [_spec("toy/train.jsonl", TRAIN), _spec("toy/test.jsonl", TEST),
             _spec("toy/big.bin", BIG, path="archive/big.zip", member="inner/big.bin")]
    _serve(server, specs[0], TRAIN)
    _serve(server, specs[1], TEST)
    _serve(server, specs[2], _zip("inner/big.bin", BIG))
    results = fetch("toy", tmp_path, base_url=server.base_url, files=specs, sleep=_no_sleep)
    assert [(r.file, r.status) for r in results] == [
        ("toy/train.jsonl", "wrote"), ("toy/test.jsonl", "wrote"), ("toy/big.bin", "wrote")]
    assert (tmp_path / "toy/train.jsonl").read_bytes() == TRAIN
    assert (tmp_path / "toy/big.bin").read_bytes() == BIG
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == [
        "big.bin", "test.jsonl", "train.jsonl"]  # no .part, no archive left
    server.requests.clear()
    again = fetch("toy", tmp_path, base_url=server.base_url, files=specs)
    assert [r.status for r in again] == ["present"] * 3 and server.requests == []


def test_a_wrong_checksum_writes_nothing(server, tmp_path) -> None:
    spec = _spec("toy/train.jsonl", TRAIN)
    _serve(server, spec, TRAIN.replace(b"q7", b"q8"))  # same size, other bytes
    (result,) = fetch("toy", tmp_path, base_url=server.base_url, files=[spec])
    assert result.status == "bad checksum" and spec.sha256 in result.detail
    assert not (tmp_path / "toy").exists() or list((tmp_path / "toy").iterdir()) == []


def test_an_interrupted_download_resumes_where_it_stopped(server, tmp_path) -> None:
    spec = _spec("toy/big.bin", BIG)
    url = f"/{spec.repository}/{spec.commit}/{spec.path}"
    _serve(server, spec, BIG)
    server.cut[url] = 30_000
    (result,) = fetch("toy", tmp_path, base_url=server.base_url, files=[spec], sleep=_no_sleep)
    assert result.status == "wrote" and (tmp_path / spec.file).read_bytes() == BIG
    assert server.requests == [(url, None), (url, "bytes=30000-")]

    # a fetch that gave up (no retries left) keeps its .part; the next one resumes it
    other = tmp_path / "again"
    server.requests.clear()
    server.cut[url] = 50_000
    (gave_up,) = fetch("toy", other, base_url=server.base_url, files=[spec], retries=0)
    assert gave_up.status == "http error" and not (other / spec.file).exists()
    assert (other / "toy/big.bin.part").stat().st_size == 50_000
    (resumed,) = fetch("toy", other, base_url=server.base_url, files=[spec])
    assert resumed.status == "wrote" and (other / spec.file).read_bytes() == BIG
    assert server.requests[-1] == (url, "bytes=50000-")
    assert not (other / "toy/big.bin.part").exists()


def test_a_server_that_ignores_ranges_restarts_the_file(server, tmp_path) -> None:
    spec = _spec("toy/big.bin", BIG)
    _serve(server, spec, BIG)
    server.ignore_range = True
    server.cut[f"/{spec.repository}/{spec.commit}/{spec.path}"] = 10_000
    (result,) = fetch("toy", tmp_path, base_url=server.base_url, files=[spec], sleep=_no_sleep)
    assert result.status == "wrote" and (tmp_path / spec.file).read_bytes() == BIG


def test_a_missing_file_is_a_clear_404_and_the_others_still_arrive(server, tmp_path) -> None:
    missing, present = _spec("toy/gone.json", b"{}"), _spec("toy/test.jsonl", TEST)
    _serve(server, present, TEST)
    results = fetch("toy", tmp_path, base_url=server.base_url, files=[missing, present])
    assert [r.status for r in results] == ["not found", "wrote"]
    assert "HTTP 404" in results[0].detail and "/someone/toy/c0ffee/toy/gone.json" in results[0].detail
    assert not (tmp_path / "toy/gone.json").exists()


def test_a_differing_file_is_kept_unless_forced(server, tmp_path) -> None:
    spec = _spec("toy/test.jsonl", TEST)
    _serve(server, spec, TEST)
    mine = tmp_path / "toy/test.jsonl"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own edits\n")
    (kept,) = fetch("toy", tmp_path, base_url=server.base_url, files=[spec])
    assert kept.status == "differs" and mine.read_bytes() == b"my own edits\n"
    (forced,) = fetch("toy", tmp_path, base_url=server.base_url, files=[spec], force=True)
    assert forced.status == "wrote" and mine.read_bytes() == TEST


def test_the_table_covers_every_dataset_with_files_and_names_only_files_loaders_read() -> None:
    files = upstream_files()
    registered = set(dataset_names()) - {"synthetic"}
    assert set(fetchable_datasets(files)) == registered
    assert set(LICENCES) == registered
    read = {name: {p.relative_to(Path("/d")).as_posix()
                   for paths in get_loader(name).split_paths(Path("/d")).values() for p in paths}
            for name in registered}
    for f in files:
        assert len(f.sha256) == 64 and f.size > 0 and len(f.commit) == 40, f
        for d in f.datasets:
            assert f.file in read[d] or "LICENSE" in f.file, (d, f.file)
    # every split file a loader reads is in the table, but weak12k's train (not published)
    # and the alternative single-file names of weak12k
    table = {(d, f.file) for f in files for d in f.datasets}
    unpublished = {("weak12k", "weak12k/train.json"), ("weak12k", "weak12k/weak12k.json")}
    assert {(d, p) for d, ps in read.items() for p in ps} - table == unpublished


@pytest.mark.shared_data
def test_real_datasets_arrive_byte_identical_and_load(server, tmp_path, shared_data_dir,
                                                      monkeypatch) -> None:
    """The recorded table against the real files: gsm8k, mawps and math23k served as their
    upstream repositories publish them (Math_23K.json inside MWPGen's zip) are fetched by the
    CLI, byte-identical to ../shared/data, and every split their loaders define is present."""
    for spec in upstream_files():
        if not set(spec.datasets) & {"gsm8k", "mawps", "math23k"}:
            continue
        body = (shared_data_dir / spec.file).read_bytes()
        _serve(server, spec, _zip(spec.member, body) if spec.member else body)
    monkeypatch.setenv(BASE_URL_ENV, server.base_url)
    data = tmp_path / "data"
    runner = CliRunner()
    result = runner.invoke(app, ["data", "fetch", "gsm8k", "mawps", "math23k",
                                 "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "gsm8k: licence MIT" in result.output
    for spec in upstream_files():
        if set(spec.datasets) & {"gsm8k", "mawps", "math23k"}:
            assert (data / spec.file).read_bytes() == (shared_data_dir / spec.file).read_bytes()
    for name in ("gsm8k", "mawps", "math23k"):
        loader = get_loader(name)
        assert loader.splits(data) == list(loader.split_paths(data)), name
    stats = runner.invoke(app, ["data", "stats", "mawps", "--split", "test", "--data-dir",
                                str(data), "--json"])
    assert stats.exit_code == 0 and json.loads(stats.output)["splits"] == {"test": 238}


def test_the_cli_exits_2_naming_what_is_not_in_place(server, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(BASE_URL_ENV, server.base_url)  # serves nothing: every file is a 404
    result = CliRunner().invoke(app, ["data", "fetch", "svamp", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "not found" in result.output and "svamp/SVAMP.json" in result.output
    assert "2 file(s) not in place" in result.output
    unknown = CliRunner().invoke(app, ["data", "fetch", "nope", "--data-dir", str(tmp_path)])
    assert unknown.exit_code == 2 and "data fetch` knows: addsub" in unknown.output
