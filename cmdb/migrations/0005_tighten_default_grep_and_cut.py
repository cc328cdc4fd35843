"""Tighten two default rules: a bare word after ``grep`` or ``cut`` may be a file name,
read relative to the SSH account's home directory (``grep -r '' .``, ``grep x .bash_history``).
grep loses -r/-R and its operands may not start with '.', '~' or '-'; cut's operands are
field lists and delimiters only. Rules a security officer already changed are left alone."""

from django.db import migrations

OLD = {
    "grep": (r"-[EFiIvcnhHwxoqslrR]+|-[ABCm]\d{0,5}|-e|--color=never", r"[^/\x00-\x1f]{1,200}"),
    "cut": (r"-d.|-[fcb][\d,-]{1,40}|-s", r"[\d,-]{1,40}|."),
}
NEW = {
    "grep": (r"-[EFiIvcnhHwxoqsl]+|-[ABCm]\d{0,5}|-e|--color=never", r"[^/.~\x00-\x1f-][^/\x00-\x1f]{0,199}"),
    "cut": (r"-d[^\w./~]?|-[fcb][\d,-]{0,40}|-s", r"[\d,-]{1,40}|[:;,|= \t]"),
}


def swap(apps, source, target):
    CommandRule = apps.get_model("cmdb", "CommandRule")
    for program, (options, operands) in source.items():
        CommandRule.objects.filter(system=None, program=program, option_pattern=options,
                                   operand_pattern=operands).update(option_pattern=target[program][0],
                                                                    operand_pattern=target[program][1])


class Migration(migrations.Migration):
    dependencies = [("cmdb", "0004_default_command_catalogue")]

    operations = [migrations.RunPython(lambda apps, editor: swap(apps, OLD, NEW),
                                       lambda apps, editor: swap(apps, NEW, OLD))]
