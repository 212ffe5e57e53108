"""--stop-service (method 4.1): the hooks stop and restart a real process, a
`php -S` web server driven through a small systemctl-like manager program,
and restart it on every failure path."""

from __future__ import annotations

import signal
import socket
import subprocess

import pytest

from testkit.servers import free_port
from .conftest import lines, text

BEFORE, AFTER = "nextcloud-before-backup", "nextcloud-after-backup"

MANAGER = '''\
#!/usr/bin/python3
"""A systemctl look-alike for one test: stop|start|is-active NAME."""
import os, signal, subprocess, sys, time
STATE, DOCROOT, PORT = {state!r}, {docroot!r}, {port!r}
action, name = sys.argv[1], sys.argv[2]
pidfile = os.path.join(STATE, name + ".pid")
with open(os.path.join(STATE, "actions.log"), "a") as log:
    log.write(f"{{action}} {{name}}\\n")

def pid():
    try:
        value = int(open(pidfile).read())
        with open(f"/proc/{{value}}/stat") as stat:
            return None if stat.read().rsplit(")", 1)[1].split()[0] == "Z" else value
    except (OSError, ValueError):
        return None

if action == "is-active":
    sys.exit(0 if pid() else 3)
if action == "stop":
    if pid():
        os.kill(pid(), signal.SIGTERM)
        while pid():
            time.sleep(0.02)
    sys.exit(0)
if action == "start":
    if not pid():
        server = subprocess.Popen(["php", "-S", f"127.0.0.1:{{PORT}}", "-t", DOCROOT],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        open(pidfile, "w").write(str(server.pid))
        while subprocess.run(["php", "-r", f"exit(@fsockopen('127.0.0.1', {{PORT}}) ? 0 : 1);"]).returncode:
            time.sleep(0.05)
    sys.exit(0)
sys.exit(2)
'''


class WebServer:
    def __init__(self, directory):
        self.state = directory / "manager"
        self.state.mkdir()
        docroot = directory / "www"
        docroot.mkdir()
        (docroot / "status.php").write_text('<?php echo json_encode(["installed" => true]);\n')
        self.port = free_port()
        self.manager = directory / "manager.py"
        self.manager.write_text(MANAGER.format(state=str(self.state), docroot=str(docroot),
                                               port=self.port))
        self.manager.chmod(0o755)

    def control(self, action: str) -> int:
        return subprocess.run([str(self.manager), action, "web"]).returncode

    def up(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def actions(self) -> list[str]:
        path = self.state / "actions.log"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def web(tmp_path):
    server = WebServer(tmp_path)
    assert server.control("start") == 0 and server.up()
    yield server
    server.control("stop")


def service_args(web):
    return ["--stop-service", "web", "--service-manager", str(web.manager)]


def test_service_is_stopped_for_the_backup_and_started_after(plain_install, run_hook, web, state_dir):
    result = run_hook(BEFORE, plain_install, *service_args(web))

    assert result.returncode == 0, text(result)
    assert not web.up()
    assert "service web: stopped" in lines(result)
    assert not [c for c in plain_install.commands() if c.startswith(("maintenance:", "config:system"))]

    result = run_hook(AFTER, plain_install, *service_args(web))

    assert result.returncode == 0, text(result)
    assert web.up()
    assert "service web: started" in lines(result)
    assert list(state_dir.glob("*.json")) == []


def test_failed_dump_restarts_the_service(plain_install, run_hook, web, tmp_path):
    (plain_install.root / "data" / "owncloud.db").unlink()

    result = run_hook(BEFORE, plain_install, *service_args(web), "--dump-to", tmp_path / "nc.sql")

    assert result.returncode == 66, text(result)
    assert web.up()
    assert web.actions()[-3:] == ["is-active web", "stop web", "start web"]


def test_sigterm_restarts_the_service(plain_install, start_hook, web):
    hook = start_hook(BEFORE, plain_install, *service_args(web), settle="60")
    hook.wait_for("waiting 60 s")
    assert not web.up()

    hook.proc.send_signal(signal.SIGTERM)

    assert hook.finish()[0] == 128 + signal.SIGTERM
    assert web.up()


def test_a_service_the_admin_had_stopped_stays_stopped(plain_install, run_hook, web):
    web.control("stop")

    before = run_hook(BEFORE, plain_install, *service_args(web))
    after = run_hook(AFTER, plain_install, *service_args(web))

    assert before.returncode == after.returncode == 0
    assert "service web: not running, left alone" in lines(before)
    assert not web.up()
    assert "start web" not in web.actions()[1:]
