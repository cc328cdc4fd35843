"""Server environments the testbed can give a server: init style, middleware layout, JDK path.

Government sites differ: one runs Tomcat as a systemd unit, another through an init.d
script, a third JEUS with its own start/stop scripts, each with its JDK somewhere else. The
testbed has no real systemd, init system, Tomcat, JEUS or JDK, so each layout installs
*stand-ins* under the server's root, named as such in their file names and headers. Every
stand-in ends in the server's own WAS functions (scripts/startup.sh and shutdown.sh, which
stay in place for the servers' CMDB script_path), and logs to catalina.out which stand-in
ran and with which JAVA_HOME, so a test can tell which command set a run used.

- ``tomcat-scripts`` (default): the CMDB's script_path/startup.sh and shutdown.sh only.
- ``systemd-tomcat``: a ``systemctl`` stand-in on the sshd's PATH (it reports the system
  as running and manages one unit, tomcat-app.service), Tomcat under <root>/tomcat, JDK 17
  under <root>/usr/lib/jvm.
- ``sysv-tomcat``: an init script <root>/etc/init.d/tomcat9 (start|stop|status), Tomcat 9
  under <root>/apache-tomcat-9, JDK 1.8 under <root>/usr/java.
- ``jeus-scripts``: a JEUS layout <root>/jeus8 (bin/jeusadmin, bin/startManagedServer,
  bin/stopServer; the scripts need JAVA_HOME like JEUS's own), JDK 11 inside it.

``install`` writes a layout and returns what the manifest records: the layout, the
directory to put first on the sshd's PATH (or ""), and the environment schema a CMDB would
hold for the server (testbed.register creates it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LAYOUTS = ("tomcat-scripts", "systemd-tomcat", "sysv-tomcat", "jeus-scripts")
DEFAULT = "tomcat-scripts"

_JAVA = """#!/bin/sh
# java STAND-IN (GUARDiA testbed): no JDK here; answers -version like the JDK it stands for.
echo 'openjdk version "{version}" (GUARDiA testbed stand-in)' >&2
"""

_DELEGATE = """#!/bin/bash
# {what} STAND-IN (GUARDiA testbed): no {product} here; it ends in the server's WAS functions.
{body}
"""


def _write(path: Path, text: str, mode: int = 0o755) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def _marker(root: Path, line: str) -> str:
    """A shell line appending to the server's catalina.out (what ran, with which JAVA_HOME)."""
    return f'echo "$(date "+%F %T") INFO: {line}" >> {root}/logs/catalina.out'


def _jdk(home: Path, version: str) -> str:
    _write(home / "bin" / "java", _JAVA.format(version=version))
    return str(home)


def install(layout: str, root: Path) -> dict[str, Any]:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown testbed layout {layout!r}; known: {', '.join(LAYOUTS)}")
    scripts = root / "scripts"
    if layout == DEFAULT:
        return {"layout": layout, "path_prepend": "", "env_schema": None}
    if layout == "systemd-tomcat":
        return _systemd(root, scripts)
    if layout == "sysv-tomcat":
        return _sysv(root, scripts)
    return _jeus(root, scripts)


def _tomcat_home(home: Path, scripts: Path) -> str:
    body = f'case "$1" in start) exec {scripts}/startup.sh ;; stop) exec {scripts}/shutdown.sh ;; esac'
    _write(home / "bin" / "catalina.sh", _DELEGATE.format(what="catalina.sh", product="Tomcat", body=body))
    return str(home)


def _systemd(root: Path, scripts: Path) -> dict[str, Any]:
    jdk = _jdk(root / "usr" / "lib" / "jvm" / "java-17-openjdk-standin", "17.0.9")
    home = _tomcat_home(root / "tomcat", scripts)
    unit = "tomcat-app.service"
    _write(
        root / "systemd-standin" / "system" / unit,
        f"[Service]\nEnvironment=JAVA_HOME={jdk}\nExecStart={home}/bin/catalina.sh start\n"
        f"ExecStop={home}/bin/catalina.sh stop\n",
        0o644,
    )
    body = f"""UNIT={unit}
case "$1" in
  is-system-running) echo running; exit 0 ;;
  start|stop|restart|is-active) ;;
  *) echo "systemctl stand-in: unsupported: $*" >&2; exit 1 ;;
esac
if [ "$2" != "$UNIT" ] && [ "$2.service" != "$UNIT" ]; then echo "Unit $2 not found." >&2; exit 5; fi
export JAVA_HOME={jdk}
{_marker(root, "systemd stand-in: systemctl $1 $UNIT (JAVA_HOME=$JAVA_HOME)")}
case "$1" in
  start) exec {home}/bin/catalina.sh start ;;
  stop) exec {home}/bin/catalina.sh stop ;;
  restart) {home}/bin/catalina.sh stop; exec {home}/bin/catalina.sh start ;;
  is-active) [ -s {root}/run/was.pid ] && echo active || {{ echo inactive; exit 3; }} ;;
esac"""
    bin_dir = root / "systemd-standin" / "bin"
    _write(bin_dir / "systemctl", _DELEGATE.format(what="systemctl", product="systemd", body=body))
    schema = {
        "init_system": "systemd",
        "service_name": unit,
        "middleware": "tomcat",
        "was_home": home,
        "jdk_path": jdk,
        "jdk_version": "17.0.9",
    }
    return {"layout": "systemd-tomcat", "path_prepend": str(bin_dir), "env_schema": schema}


def _sysv(root: Path, scripts: Path) -> dict[str, Any]:
    jdk = _jdk(root / "usr" / "java" / "jdk1.8.0_202-standin", "1.8.0_202")
    home = _tomcat_home(root / "apache-tomcat-9", scripts)
    body = f"""# chkconfig: 345 80 20 (an init script of its own, like /etc/init.d/tomcat9)
export JAVA_HOME={jdk}
{_marker(root, "init.d stand-in: tomcat9 $1 (JAVA_HOME=$JAVA_HOME)")}
case "$1" in
  start) exec {home}/bin/catalina.sh start ;;
  stop) exec {home}/bin/catalina.sh stop ;;
  status) [ -s {root}/run/was.pid ] && echo running || {{ echo stopped; exit 3; }} ;;
  *) echo "Usage: $0 {{start|stop|status}}" >&2; exit 2 ;;
esac"""
    script = _write(
        root / "etc" / "init.d" / "tomcat9", _DELEGATE.format(what="init.d", product="SysV init", body=body)
    )
    schema = {
        "init_system": "sysv",
        "middleware": "tomcat",
        "was_home": home,
        "start_script": script,
        "stop_script": script,
        "jdk_path": jdk,
        "jdk_version": "1.8.0_202",
    }
    return {"layout": "sysv-tomcat", "path_prepend": "", "env_schema": schema}


def _jeus(root: Path, scripts: Path) -> dict[str, Any]:
    home = root / "jeus8"
    jdk = _jdk(home / "jdk-11-standin", "11.0.21")
    _write(home / "bin" / "jeusadmin", _DELEGATE.format(what="jeusadmin", product="JEUS", body="echo JEUS 8"))
    need_java = 'if [ ! -x "$JAVA_HOME/bin/java" ]; then echo "JAVA_HOME is not set to a JDK" >&2; exit 1; fi'
    paths = {}
    for name, action in (("startManagedServer", "startup"), ("stopServer", "shutdown")):
        body = (
            f"{need_java}\n{_marker(root, f'JEUS stand-in: {name} (JAVA_HOME=$JAVA_HOME)')}\nexec {scripts}/{action}.sh"
        )
        paths[action] = _write(home / "bin" / name, _DELEGATE.format(what=name, product="JEUS", body=body))
    schema = {
        "init_system": "was",
        "middleware": "jeus",
        "was_home": str(home),
        "start_script": paths["startup"],
        "stop_script": paths["shutdown"],
        "jdk_path": jdk,
        "jdk_version": "11.0.21",
    }
    return {"layout": "jeus-scripts", "path_prepend": "", "env_schema": schema}
