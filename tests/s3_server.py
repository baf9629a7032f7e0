"""A real S3-compatible server on loopback for the tests: moto's standalone server
(``moto[server]``, a dev dependency) in a child process, one bucket, and the environment that
points ``pyarrow.fs`` (and so Ray Data, Ray Train and :mod:`distill.storage`) at it.

    with S3Server() as s3:
        s3.env            # AWS_* variables: set them in a process before it touches s3://
        s3.uri("run")     # s3://<bucket>/run
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

BUCKET = "mathdistill-tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto's server on a free loopback port with one bucket, stopped on exit."""

    def __init__(self, bucket: str = BUCKET) -> None:
        self.bucket = bucket
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": self.endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
        self._proc: subprocess.Popen | None = None

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    def filesystem(self) -> Any:
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                                 endpoint_override=self.endpoint, allow_bucket_creation=True)

    def __enter__(self) -> "S3Server":
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, **self.env})
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError("moto's S3 server did not start")
                time.sleep(0.2)
        self.filesystem().create_dir(self.bucket)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
