"""``medssl viewer``: start the Streamlit clinician viewer with hardened settings."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from medssl.errors import ConfigError

DEFAULT_PORT = 8501
DEFAULT_MAX_UPLOAD_MB = 512
APP_ENV = "MEDSSL_VIEWER_APP"


def find_app() -> Path:
    """The viewer script: $MEDSSL_VIEWER_APP, else ``apps/viewer/server.py`` beside the package
    (a source checkout or an editable install), else an installed ``apps.viewer`` package.
    ``server.py`` wraps ``app.py`` with the security headers."""
    override = os.environ.get(APP_ENV)
    candidates = [Path(override)] if override else []
    import medssl

    candidates.append(Path(medssl.__file__).resolve().parents[1] / "apps" / "viewer" / "server.py")
    spec = importlib.util.find_spec("apps.viewer") if importlib.util.find_spec("apps") else None
    if spec is not None and spec.origin:  # `apps` installed beside medssl (a wheel that ships it)
        candidates.append(Path(spec.origin).parent / "server.py")
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(
        f"viewer app not found (looked at {', '.join(str(c) for c in candidates)}); install medssl "
        f"editable from its repository (pip install -e .) or set {APP_ENV} to apps/viewer/server.py"
    )


def streamlit_flags(host: str, port: int, max_upload_mb: int) -> list[str]:
    """Hardened settings: one interface, no tracebacks in the browser, capped uploads, XSRF
    protection, no telemetry, no file watcher, no developer menu."""
    return [
        f"--server.address={host}",
        f"--server.port={port}",
        "--server.headless=true",
        f"--server.maxUploadSize={max_upload_mb}",
        "--server.enableXsrfProtection=true",
        "--server.enableCORS=true",
        "--server.fileWatcherType=none",
        "--server.runOnSave=false",
        "--client.showErrorDetails=none",
        "--client.toolbarMode=viewer",
        "--browser.gatherUsageStats=false",
        "--global.developmentMode=false",
    ]


def _folder(value: str | None, flag: str) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise ConfigError(f"{flag} {value}: not a folder")
    return path


def build_command(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` command line and the environment the app reads its folders from."""
    env = {
        "MEDSSL_VIEWER_MAX_UPLOAD_MB": str(args.max_upload_mb),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    for name, flag, value in (
        ("MEDSSL_VIEWER_DATA_DIR", "--data-dir", args.data_dir),
        ("MEDSSL_VIEWER_RESULTS_DIR", "--results-dir", args.results_dir),
        ("MEDSSL_VIEWER_MODELS_DIR", "--models-dir", args.models_dir),
    ):
        folder = _folder(value, flag)
        if folder is not None:
            env[name] = str(folder)
    cmd = [sys.executable, "-m", "streamlit", "run", str(find_app()), *streamlit_flags(args.host, args.port, args.max_upload_mb)]
    if args.secrets:
        secrets = Path(args.secrets).expanduser().resolve()
        if not secrets.is_file():
            raise ConfigError(f"--secrets {args.secrets}: no such file")
        cmd.append(f"--secrets.files={secrets}")
    return cmd, env


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def has_login(secrets: str | None) -> bool:
    """True when ``--secrets`` names a TOML file with an ``[auth]`` section (Streamlit OIDC)."""
    if not secrets:
        return False
    import tomllib

    try:
        doc = tomllib.loads(Path(secrets).expanduser().read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"--secrets {secrets}: not a readable TOML file ({err.__class__.__name__})") from err
    return isinstance(doc.get("auth"), dict) and bool(doc["auth"])


def check_exposure(args: argparse.Namespace) -> None:
    """Beyond localhost the viewer shows patient scans to a network: refuse without a login
    (``--secrets`` with [auth]) unless ``--insecure-no-auth`` says authentication is in front."""
    if args.host in LOOPBACK or has_login(args.secrets) or args.insecure_no_auth:
        return
    raise ConfigError(
        f"--host {args.host}: the viewer would serve patient scans beyond this machine without "
        "authentication; give --secrets with an [auth] section (OIDC login), or put an authenticating "
        "reverse proxy in front and pass --insecure-no-auth (see the README)"
    )


def run(args: argparse.Namespace) -> int:
    check_exposure(args)
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}: expected 1-65535")
    if args.max_upload_mb < 1:
        raise ConfigError(f"--max-upload-mb {args.max_upload_mb}: expected at least 1")
    cmd, env = build_command(args)
    if args.print_command:
        print(" ".join(f"{k}={v}" for k, v in env.items()), " ".join(cmd))
        return 0
    if args.host not in LOOPBACK and args.insecure_no_auth and not has_login(args.secrets):
        print(f"medssl viewer: listening on {args.host} with no login of its own (--insecure-no-auth)", file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="medssl-viewer-")
    env["MEDSSL_VIEWER_TMP"] = tmp
    print(f"medssl viewer: http://{args.host}:{args.port}", file=sys.stderr)
    proc = subprocess.Popen(cmd, env={**os.environ, **env})
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: proc.send_signal(signum))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def register(sub) -> None:
    p = sub.add_parser(
        "viewer",
        help="open the clinician viewer (Streamlit) in the browser",
        description="Start the Streamlit viewer bound to 127.0.0.1 with hardened settings.",
    )
    p.add_argument("--data-dir", help="folder of NIfTI files and DICOM series to pick from")
    p.add_argument("--results-dir", help="batch results folder (results.csv) to use as a worklist")
    p.add_argument("--models-dir", help="folder of model artifacts (*.pt) to run on demand")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1 only)")
    p.add_argument(
        "--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest upload accepted, MB (default {DEFAULT_MAX_UPLOAD_MB})",
    )
    p.add_argument("--secrets", help="secrets.toml with an [auth] section: require OIDC login (st.login)")
    p.add_argument(
        "--insecure-no-auth", action="store_true",
        help="allow --host beyond localhost without --secrets login, e.g. behind an authenticating reverse proxy",
    )
    p.add_argument("--print-command", action="store_true", help="print the streamlit command and exit")
    p.set_defaults(func=run)
