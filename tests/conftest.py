import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest


@pytest.fixture(scope="session")
def small_synth():
    """Well-separated blobs on the unit sphere: features (N, 32) float32, labels int64.

    40 identities of 5..60 images each, within-identity cosine about 0.9.
    """
    rng = np.random.default_rng(3)
    d = 32
    sizes = rng.integers(5, 61, size=40)
    centres = rng.standard_normal((40, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(40), sizes)
    feats = centres[labels] + 0.3 * rng.standard_normal((labels.size, d)) / np.sqrt(d)
    feats = (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)
    return feats, labels.astype(np.int64)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def separated_groups():
    """:func:`_problems.two_groups_and_outlier` (41 items) with its kNN graph (k 12):
    ``(features, labels, knn)``."""
    from _problems import two_groups_and_outlier

    from facecluster.knn import brute_force_knn

    x, truth = two_groups_and_outlier()
    return x, truth, brute_force_knn(x, 12)


class HTTPTestServer:
    """Serves ``files`` (path -> bytes) with Range support; can cut transfers short."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_next: int | None = None  # stop the next response after this many bytes
        self.honour_range = True
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and outer.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                data = body[start:]
                if outer.cut_next is not None:
                    data, outer.cut_next = data[: outer.cut_next], None
                    self.wfile.write(data)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server():
    """An HTTP server on 127.0.0.1 (a free port) serving ``http_server.files``."""
    s = HTTPTestServer()
    yield s
    s.close()
