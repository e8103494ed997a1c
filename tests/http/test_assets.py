"""StaticAssets: which files a directory offers, and how."""

import gzip
from pathlib import Path

from slurmcast.http.assets import StaticAssets


def test_files_are_offered_by_relative_path_with_their_types(tmp_path: Path) -> None:
    (tmp_path / "vendor").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "vendor" / "lib.js").write_text("export default 1;")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    (tmp_path / "data.bin").write_bytes(b"\0")
    (tmp_path / ".hidden.js").write_text("secret")
    assets = StaticAssets.load(tmp_path)
    assert len(assets) == 4
    assert assets.get("index.html").content_type == "text/html"  # type: ignore[union-attr]
    script = assets.get("vendor/lib.js")
    assert script is not None and script.content_type == "text/javascript"
    assert script.gzipped is not None and gzip.decompress(script.gzipped) == script.body
    png = assets.get("logo.png")
    assert png is not None and png.gzipped is None  # already compressed
    assert assets.get("data.bin").content_type == "application/octet-stream"  # type: ignore[union-attr]
    assert assets.get(".hidden.js") is None
    assert assets.get("vendor") is None and assets.get("../index.html") is None


def test_links_are_followed_and_validators_follow_the_content(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.js"
    elsewhere.write_text("export const a = 1;")
    static = tmp_path / "static"
    static.mkdir()
    (static / "client.js").symlink_to(elsewhere)
    (static / "same.js").write_text("export const a = 1;")
    (static / "other.js").write_text("export const a = 2;")
    assets = StaticAssets.load(static)
    client, same, other = (assets.get(n) for n in ("client.js", "same.js", "other.js"))
    assert client is not None and same is not None and other is not None
    assert client.body == b"export const a = 1;"
    assert client.etag == same.etag != other.etag
    assert client.gzip_etag != client.etag


def test_a_missing_directory_offers_nothing(tmp_path: Path) -> None:
    assert len(StaticAssets.load(tmp_path / "absent")) == 0
