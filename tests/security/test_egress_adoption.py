"""An allowlisted release across a restart: a server stopped with
PLUGHOST_KEEP_REPLICAS_ON_STOP leaves its replica running and the release's proxy folder in
place (its socket gone); the next server on the home listens there again, so the adopted
replica still reaches the allowed port; undeployed, the release's socket and folder go, and
the stopped server leaves nothing in /tmp."""

from __future__ import annotations

import shutil
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

from egress_e2e_support import FETCHER, listening, proxy_root
from sec_servers import server_env, wait_until
from sec_support import wait_status
from support import PIPELINE, LiveServer, zip_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "egress"))

from egress_support import outside_server

ALLOWED_NS = "ns_allow_kept"


def test_an_adopted_replica_keeps_its_way_out(tmp_path: Path) -> None:
    home = tmp_path / "home"
    root = proxy_root(home)
    name = f"egress_kept_{uuid.uuid4().hex[:8]}"
    files = {
        "manifest.py": f'feature_extractor_name = "{name}"\nversion = "1.0.0"\n',
        "pipeline.py": PIPELINE,
        "realtime.py": FETCHER,
    }
    with ExitStack() as stack:
        port, hits = stack.enter_context(outside_server())
        stack.callback(shutil.rmtree, root, True)  # whatever happens, nothing stays in /tmp
        env = {
            **server_env(skip_scan=False),
            "PLUGHOST_EGRESS_ALLOW": f"{ALLOWED_NS}=127.0.0.1:{port}",
        }
        first = LiveServer(home=home, extra_env={**env, "PLUGHOST_KEEP_REPLICAS_ON_STOP": "true"})
        first.start()
        stack.callback(first.stop)
        first.key = (home / "admin-key").read_text().strip()
        created = first.cli("namespaces", "create", ALLOWED_NS, "--id", ALLOWED_NS)
        assert created.returncode == 0, created.stderr
        url = f"http://127.0.0.1:{port}/kept"
        with first.client() as c:
            up = c.post(
                f"/v1/namespaces/{ALLOWED_NS}/plugins",
                files={"file": ("p.zip", zip_bytes(files), "application/zip")},
                data={"name": name, "version": "1.0.0"},
            ).json()
            plugin_id = up["plugin_id"]
            c.post(f"/v1/namespaces/{ALLOWED_NS}/plugins/{plugin_id}/deploy").raise_for_status()
            body = wait_status(c, plugin_id, ns=ALLOWED_NS)
            assert body["status"] == "deployed", body
            route = body["route_prefix"]
            out = c.post(route, json={"inputs": {"url": url}}, timeout=120).json()
            assert out.get("body") == f"outside {port} /kept", out
        (folder,) = listening(home)
        first.stop()  # keep-on-stop: the replica runs on, its folder stays, the socket goes
        assert folder.is_dir() and listening(home) == set()

        again = LiveServer(home=home, key=first.key, extra_env=env).start()
        stack.callback(again.stop)
        assert listening(home) == {folder}  # restored before the replica is adopted
        with again.client() as c:
            assert wait_status(c, plugin_id, ns=ALLOWED_NS)["status"] == "deployed"
            out = c.post(route, json={"inputs": {"url": url + "/adopted"}}, timeout=120).json()
            assert out.get("body") == f"outside {port} /kept/adopted", out
            assert "adopted replica" in again.logs()
            c.delete(f"/v1/namespaces/{ALLOWED_NS}/plugins/{plugin_id}").raise_for_status()
            assert wait_until(lambda: not folder.exists(), 60), sorted(folder.iterdir())
        again.stop()
        assert not root.exists(), sorted(root.rglob("*"))
        assert hits.count("/kept/adopted") == 2  # urllib and download_asset
