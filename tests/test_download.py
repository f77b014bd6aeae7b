"""Downloads against a local HTTP server on 127.0.0.1, and archive extraction."""

import hashlib
import io
import tarfile

import numpy as np
import pytest

from facecluster.data import download as dl
from facecluster.io import InputError

PAYLOAD = np.random.default_rng(0).bytes(300_000)
MD5 = hashlib.md5(PAYLOAD).hexdigest()


@pytest.fixture
def server(http_server):
    http_server.files["/data.bin"] = PAYLOAD
    return http_server


def no_sleep(_):
    pass


def test_http_download_verifies_md5_and_leaves_no_part(server, tmp_path):
    dest = tmp_path / "a" / "data.bin"
    dl.fetch(dest, urls=[server.url("/data.bin")], md5=MD5, _sleep=no_sleep)
    assert dest.read_bytes() == PAYLOAD
    assert list(dest.parent.iterdir()) == [dest]


def test_md5_mismatch_is_a_clear_error_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "data.bin"
    with pytest.raises(dl.DownloadError) as err:
        dl.fetch(dest, urls=[server.url("/data.bin")], md5="0" * 32, _sleep=no_sleep)
    msg = str(err.value)
    assert "md5 mismatch" in msg and str(dest) in msg and MD5 in msg
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests) == 1  # the same bytes are not fetched again


def test_interrupted_transfer_is_resumed(server, tmp_path):
    dest = tmp_path / "data.bin"
    server.cut_next = 100_000
    dl.fetch(dest, urls=[server.url("/data.bin")], md5=MD5, retries=2, _sleep=no_sleep)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", None), ("/data.bin", "bytes=100000-")]
    assert not (tmp_path / "data.bin.part").exists()


def test_resume_after_a_killed_run(server, tmp_path):
    """A .part left by an earlier, killed job is continued, not restarted."""
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:12_345])
    dl.fetch_http(server.url("/data.bin"), dest, md5=MD5)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", "bytes=12345-")]


def test_server_without_range_support_restarts(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(b"stale bytes")
    server.honour_range = False
    dl.fetch_http(server.url("/data.bin"), dest, md5=MD5)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_accepted(server, tmp_path):
    dest = tmp_path / "data.bin"
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    dl.fetch_http(server.url("/data.bin"), dest, md5=MD5)  # the server answers 416
    assert dest.read_bytes() == PAYLOAD


def test_failing_sources_are_retried_then_named_with_the_mirrors(server, tmp_path):
    dest = tmp_path / "data.bin"
    pauses = []
    with pytest.raises(dl.DownloadError) as err:
        dl.fetch(
            dest,
            urls=[server.url("/missing"), server.url("/gone")],
            retries=2,
            pause=3,
            mirrors=["https://example.org/by-hand"],
            _sleep=pauses.append,
        )
    msg = str(err.value)
    assert "HTTP 404" in msg and "/missing (attempt 2)" in msg and "/gone (attempt 1)" in msg
    assert "https://example.org/by-hand" in msg and str(dest) in msg
    assert pauses == [3, 3]
    assert not dest.exists()


def test_second_source_is_used_when_the_first_fails(server, tmp_path):
    dest = tmp_path / "data.bin"
    dl.fetch(dest, urls=[server.url("/missing"), server.url("/data.bin")], md5=MD5, _sleep=no_sleep)
    assert dest.read_bytes() == PAYLOAD


def test_gdrive_goes_through_gdown_and_md5(tmp_path, monkeypatch):
    import gdown

    calls = []

    def fake_download(*, id, output, quiet, resume):
        calls.append((id, resume))
        with open(output, "wb") as fh:
            fh.write(PAYLOAD)
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    dest = tmp_path / "x.tar.gz"
    dl.fetch(dest, gdrive="abc_DEF-1", md5=MD5, _sleep=no_sleep)
    assert dest.read_bytes() == PAYLOAD and calls == [("abc_DEF-1", True)]
    with pytest.raises(dl.DownloadError, match="md5 mismatch"):
        dl.fetch(tmp_path / "y.tar.gz", gdrive="abc", md5="f" * 32, _sleep=no_sleep)
    assert not (tmp_path / "y.tar.gz").exists() and not (tmp_path / "y.tar.gz.part").exists()


def test_no_source_configured(tmp_path):
    with pytest.raises(dl.DownloadError, match="no download source"):
        dl.fetch(tmp_path / "x")


# --------------------------------------------------------------------------------- extract


def make_tar(path, members: dict[str, bytes], mode="w:gz"):
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def md5(b):
    return hashlib.md5(b).hexdigest()


def test_extract_takes_wanted_files_after_leading_folders(tmp_path):
    arch = make_tar(
        tmp_path / "a.tar.gz",
        {
            "data/features/part1_test.bin": b"F" * 40,
            "data/labels/part1_test.meta": b"0\n1\n",
            "data/features/part3_test.bin": b"not wanted",
            "../../evil": b"x",
        },
    )
    wanted = {"features/part1_test.bin": md5(b"F" * 40), "labels/part1_test.meta": None}
    found = dl.extract(arch, tmp_path / "out", wanted)
    assert set(found) == set(wanted)
    assert (tmp_path / "out" / "features" / "part1_test.bin").read_bytes() == b"F" * 40
    files = sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")
    )
    assert files == ["features", "features/part1_test.bin", "labels", "labels/part1_test.meta"]
    assert not (tmp_path.parent / "evil").exists()


def test_extract_md5_mismatch_names_file_and_leaves_no_output(tmp_path):
    arch = make_tar(tmp_path / "a.tar", {"features/x.bin": b"abc"}, mode="w")
    with pytest.raises(InputError) as err:
        dl.extract(arch, tmp_path / "out", {"features/x.bin": "0" * 32})
    assert "features/x.bin" in str(err.value) and "md5 mismatch" in str(err.value)
    assert not list((tmp_path / "out").rglob("*.bin*"))


def test_extract_missing_file(tmp_path):
    arch = make_tar(tmp_path / "a.tar.gz", {"features/x.bin": b"abc"})
    with pytest.raises(InputError, match="missing labels/x.meta"):
        dl.extract(arch, tmp_path / "out", {"features/x.bin": None, "labels/x.meta": None})
    found = dl.extract(
        arch,
        tmp_path / "out2",
        {"features/x.bin": None, "knns/x/faiss_k_80.npz": None},
        optional=["knns/x/faiss_k_80.npz"],
    )
    assert list(found) == ["features/x.bin"]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_extract_corrupt_archive(tmp_path, damage):
    arch = make_tar(
        tmp_path / "a.tar.gz", {"features/x.bin": np.random.default_rng(1).bytes(50_000)}
    )
    raw = arch.read_bytes()
    arch.write_bytes(raw[: len(raw) // 2] if damage == "truncate" else b"<html>quota</html>")
    with pytest.raises(InputError, match="not a readable tar archive") as err:
        dl.extract(arch, tmp_path / "out", {"features/x.bin": None})
    assert str(arch) in str(err.value)


def test_md5sum_matches_hashlib(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(PAYLOAD)
    assert dl.md5sum(p, chunk=4096) == MD5
