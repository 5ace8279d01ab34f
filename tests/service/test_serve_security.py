"""Secure by default: no key, no service; the dev flag only on loopback."""

from __future__ import annotations

import subprocess

from tests.service.helpers import CFD, Server


def test_refuses_to_start_without_a_key(tmp_path):
    result = subprocess.run([CFD, "serve", "--data-dir", str(tmp_path / "var"), "--port", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "no API key" in result.stderr


def test_dev_flag_refused_off_loopback(tmp_path):
    result = subprocess.run([CFD, "serve", "--data-dir", str(tmp_path / "var"), "--host", "0.0.0.0",
                             "--insecure-dev-no-auth"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "loopback" in result.stderr


def test_init_admin_key_bootstraps_once(tmp_path):
    import httpx

    data_dir = tmp_path / "var"
    key_file = tmp_path / "admin.key"
    server = Server(data_dir, "--init-admin-key", str(key_file)).start()
    try:
        key = key_file.read_text().strip()
        assert (key_file.stat().st_mode & 0o777) == 0o600
        assert httpx.get(f"{server.url}/v1/brands", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert httpx.get(f"{server.url}/v1/brands").status_code == 401
    finally:
        server.stop()
    server.start()  # a key exists now: the file is not rewritten
    server.stop()
    assert key_file.read_text().strip() == key
