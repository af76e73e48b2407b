"""The browser check itself can fail: each defect a reader would hit is reported. (The CI profile's own
report is checked with it in test_e2e.py.)"""
import struct
import zlib

from browser import check_site


def _png(path, w=4, h=3):
    raw = b"".join(b"\x00" + b"\x80\x80\x80" * w for _ in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_a_clean_site_passes_and_every_defect_is_named(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    _png(good / "ok.png")
    (good / "index.html").write_text('<html><body><img src="ok.png"><a href="b.html#sec">b</a></body></html>')
    (good / "b.html").write_text('<html><body><h2 id="sec">s</h2><a href="index.html">back</a></body></html>')
    r = check_site(good / "index.html", tmp_path / "good.png")
    assert r["problems"] == [] and len(r["pages"]) == 2
    assert (tmp_path / "good.png").stat().st_size > 0

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png")
    (bad / "index.html").write_text(
        '<html><body><img src="broken.png"><a href="missing.html">x</a><a href="b.html#nowhere">y</a>'
        '<script>console.error("boom")</script><img src="http://127.0.0.1:9/remote.png"></body></html>')
    (bad / "b.html").write_text("<html><body>b</body></html>")
    problems = "\n".join(check_site(bad / "index.html", tmp_path / "bad.png")["problems"])
    assert "image does not decode on index.html" in problems and "broken.png" in problems
    assert "broken link" in problems and "missing.html" in problems
    assert "missing anchor #nowhere on b.html" in problems
    assert "console error on index.html" in problems and "boom" in problems
    assert "network fetch from index.html: http://127.0.0.1:9/remote.png" in problems
