"""Fetching the TFLM tree at the pinned commit, offline: a local HTTP server serves a tflite-micro archive whose
create_tflm_tree.py is a stand-in (TFLM's real script downloads from GitHub, which no machine here reaches).

What this checks is chipfit's part: the download, the safe extraction, the call of TFLM's script with the
Cortex-M options, the CMSIS headers added after it, the record, the atomic move into place, the errors, and
that ``tflm_source`` finds a fetched tree next time. TFLM's own script is not exercised here.
"""

from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chipfit.firmware import sources
from chipfit.firmware.sources import fetch_tflm_tree, fetched_tree, is_tflm_tree, tflm_source
from chipfit.firmware.toolchain import FirmwareError

STAND_IN = '''
import json, sys
from pathlib import Path
out = Path(sys.argv[-1])
if "FAIL" in Path("mode").read_text():
    print("make: *** [download] Error 1", file=sys.stderr); sys.exit(2)
(out / "tensorflow/lite/micro").mkdir(parents=True)
(out / "tensorflow/lite/micro/micro_interpreter.h").write_text("// stand-in")
(out / "third_party/cmsis_nn/Include").mkdir(parents=True)
dl = Path("tensorflow/lite/micro/tools/make/downloads")
(dl / "cortex_dfp/Device/ARMCM4/Include").mkdir(parents=True)
(dl / "cortex_dfp/Device/ARMCM4/Include/ARMCM4.h").write_text("// dfp")
(dl / "cmsis/CMSIS/Core/Include").mkdir(parents=True)
(dl / "cmsis/CMSIS/Core/Include/core_cm4.h").write_text("// core")
Path(out / "argv.json").write_text(json.dumps(sys.argv[1:]))
'''


def _archive(mode: str, *, script: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        files = {"mode": mode, "README.md": "tflite-micro"}
        if script:
            files["tensorflow/lite/micro/tools/project_generation/create_tflm_tree.py"] = STAND_IN
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"tflite-micro-90b983c2b/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def server() -> Iterator[dict[str, bytes]]:
    """Serves ``archives[path]`` at ``http://127.0.0.1:PORT/path``; yields the dict with its ``url`` base."""
    archives: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = archives.get(self.path.lstrip("/"))
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            if body is not None:
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    archives["__base__"] = f"http://127.0.0.1:{httpd.server_address[1]}/".encode()
    yield archives
    httpd.shutdown()


def _url(server: dict[str, bytes]) -> str:
    return server["__base__"].decode() + "{commit}.tar.gz"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHIPFIT_FIRMWARE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_fetch_builds_the_tree_with_the_cortex_m_options(server: dict[str, bytes]) -> None:
    server["90b983c2b.tar.gz"] = _archive("ok")
    tree = fetch_tflm_tree(archive_url=_url(server))
    assert tree == fetched_tree() and is_tflm_tree(tree)
    argv = json.loads((tree / "argv.json").read_text())
    assert argv[0] == f"--makefile_options={sources.MAKE_OPTIONS}" and "OPTIMIZED_KERNEL_DIR=cmsis_nn" in argv[0]
    # the headers the timer source needs, copied from TFLM's downloads
    assert (tree / "third_party/cortex_dfp/Device/ARMCM4/Include/ARMCM4.h").is_file()
    assert (tree / "third_party/cmsis/CMSIS/Core/Include/core_cm4.h").is_file()
    record = json.loads((tree / sources.RECORD).read_text())
    assert record["tflite_micro"] == "90b983c2b" and record["archive"].endswith("/90b983c2b.tar.gz")
    # nothing left beside it, and a second call reuses the tree without downloading
    assert [p.name for p in tree.parent.iterdir()] == [tree.name]
    del server["90b983c2b.tar.gz"]
    assert fetch_tflm_tree(archive_url=_url(server)) == tree


def test_tflm_source_finds_a_fetched_tree(server: dict[str, bytes], monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.delenv("CHIPFIT_TFLM_SRC", raising=False)
    monkeypatch.setattr(sources, "_shared_candidates", lambda: [tmp_path / "no-shared"])
    monkeypatch.setattr(sources, "ARCHIVE", _url(server))
    with pytest.raises(FirmwareError, match=r"not found.*no-shared"):
        tflm_source(fetch=False)
    server["90b983c2b.tar.gz"] = _archive("ok")
    monkeypatch.setattr(sources, "fetch_tflm_tree", lambda: fetch_tflm_tree(archive_url=_url(server)))
    assert tflm_source() == fetched_tree().resolve()
    del server["90b983c2b.tar.gz"]
    assert tflm_source(fetch=False) == fetched_tree().resolve()


def test_no_network_says_so_and_where_to_get_the_sources(server: dict[str, bytes], monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.delenv("CHIPFIT_TFLM_SRC", raising=False)
    monkeypatch.setattr(sources, "_shared_candidates", lambda: [tmp_path / "no-shared"])
    monkeypatch.setattr(sources, "ARCHIVE", _url(server))  # 404
    with pytest.raises(FirmwareError, match=r"Fetching them failed: cannot fetch.*404.*CHIPFIT_TFLM_SRC.*"
                                            r"CMSIS-NN at 4ab83cc3"):
        tflm_source(fetch=True)
    assert not fetched_tree().exists()


def test_a_failing_script_or_a_wrong_archive_leaves_nothing(server: dict[str, bytes]) -> None:
    server["90b983c2b.tar.gz"] = _archive("FAIL")
    with pytest.raises(FirmwareError, match=r"(?s)create_tflm_tree.py failed \(exit 2\).*Error 1"):
        fetch_tflm_tree(archive_url=_url(server))
    server["90b983c2b.tar.gz"] = _archive("ok", script=False)
    with pytest.raises(FirmwareError, match="not a tflite-micro archive"):
        fetch_tflm_tree(archive_url=_url(server))
    assert list(fetched_tree().parent.iterdir()) == []
