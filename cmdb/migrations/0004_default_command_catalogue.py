"""The default command catalogue: read-only diagnostics every system gets.

Written once, as data: a security officer who later narrows or removes a default rule is
not overruled by the next migrate. Options that change something are left out on purpose
(``ss -K`` kills sockets, ``date -s`` sets the clock, ``sort -o`` and ``uniq IN OUT`` write
files, ``hostname NAME`` renames the host, ``tail -f`` never ends).
"""

from django.db import migrations

NO_SLASH_TEXT = r"[^/\x00-\x1f]{1,200}"
DEFAULTS = [
    # program, description, option_pattern, operand_pattern, argv_pattern, path_roots, is_filter
    ("ps", "프로세스 목록", r"-[AaeflFjLTuxwHo]+|--sort=[-+]?[a-z%]+(,[-+]?[a-z%]+)*|--no-headers|--forest",
     r"[A-Za-z0-9_%,:=+-]{1,200}", "", "", False),
    ("df", "디스크 사용량", r"-[hkPTilma]+", "", "", "app,deploy,backup,scripts,log", False),
    ("free", "메모리 사용량", r"-[bkmghltw]+", "", "", "", False),
    ("uptime", "가동 시간과 부하", r"-[ps]+", "", "", "", False),
    ("uname", "커널과 OS", r"-[asnrvmpio]+", "", "", "", False),
    ("id", "계정과 그룹", r"-[ugGnr]+", r"[a-z_][a-z0-9_-]{0,31}", "", "", False),
    ("whoami", "로그인 계정", "", "", "", "", False),
    ("hostname", "호스트 이름 (변경 불가)", r"-[fsiIA]", "", "", "", False),
    ("date", "서버 시각 (설정 불가)", r"-[uR]+|--utc|--iso-8601(=[a-z]+)?|--rfc-3339=[a-z]+",
     r"\+[%A-Za-z0-9:_.,-]{1,60}", "", "", False),
    ("w", "로그인 사용자", r"-[hsi]+", "", "", "", False),
    ("vmstat", "가상 메모리 통계", r"-[aSwt]+", r"\d{1,3}|[kKmM]", "", "", False),
    ("nproc", "CPU 수", "", "", "", "", False),
    ("ss", "소켓 (조회만)", r"-[ltunpaxs4o6eimH]+", r"sport|dport|src|dst|=|eq|and|:\d{1,5}", "", "", False),
    ("netstat", "네트워크 연결 (조회만)", r"-[tulnpaes]+", "", "", "", False),
    ("systemctl", "서비스 상태 (조회만)", r"--no-pager|-l|-n\d{1,4}", r"status|is-active|is-enabled|[A-Za-z0-9@._-]{1,100}",
     r"(?:(?:--no-pager|-l|-n\d{1,4}) )*(?:status|is-active|is-enabled)(?: [A-Za-z0-9@._-]{1,100})+"
     r"(?: (?:--no-pager|-l|-n\d{1,4}))*", "", False),
    ("ls", "디렉터리 목록", r"-[lahtrSdi1R]+", "", "", "app,deploy,backup,scripts,log", False),
    ("du", "디렉터리 용량", r"-[shcak]+|--max-depth=\d", "", "", "app,deploy,backup,log", False),
    ("cat", "로그 파일 보기", r"-[n]", "", "", "log", False),
    ("tail", "로그 끝부분", r"-[nqvc]+|-n\d{1,6}|--lines=\d{1,6}", r"\+?\d{1,6}", "", "log", True),
    ("head", "앞부분", r"-[nqvc]+|-n\d{1,6}|--lines=\d{1,6}", r"\d{1,6}", "", "log", True),
    ("grep", "검색", r"-[EFiIvcnhHwxoqslrR]+|-[ABCm]\d{0,5}|-e|--color=never", NO_SLASH_TEXT, "", "log", True),
    ("wc", "줄 수 세기", r"-[lwcmL]+", "", "", "log", True),
    ("sort", "정렬 (파일 쓰기 불가)", r"-[nrkutbfhV]+|-k\d{1,2}(,\d{1,2})?|-t.", r"\d{1,2}(,\d{1,2})?", "", "", True),
    ("uniq", "중복 제거 (파일 쓰기 불가)", r"-[cdui]+", "", "", "", True),
    ("cut", "필드 자르기", r"-d.|-[fcb][\d,-]{1,40}|-s", r"[\d,-]{1,40}|.", "", "", True),
]


def seed(apps, schema_editor):
    CommandRule = apps.get_model("cmdb", "CommandRule")
    for program, description, options, operands, argv, roots, is_filter in DEFAULTS:
        CommandRule.objects.get_or_create(
            system=None, program=program,
            defaults={"description": description, "option_pattern": options, "operand_pattern": operands,
                      "argv_pattern": argv, "path_roots": roots, "is_filter": is_filter})


def unseed(apps, schema_editor):
    apps.get_model("cmdb", "CommandRule").objects.filter(system=None, program__in=[d[0] for d in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("cmdb", "0003_command_catalogue")]

    operations = [migrations.RunPython(seed, unseed)]
