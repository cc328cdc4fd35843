#!/bin/sh
# Refresh the English catalogue (governance/locale/en) from the code and templates, then
# compile it. The msgids are Korean; give every new entry an English msgstr in the .po
# (tests/test_translations.py fails on an empty or fuzzy one) and run this again.
set -eu
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY manage.py makemessages -l en --no-location --no-obsolete \
    -i tests -i bench -i docs -i scripts -i static -i seed -i var
$PY manage.py compilemessages -l en -i .venv -i var
echo "untranslated or fuzzy entries:"
msgattrib --untranslated governance/locale/en/LC_MESSAGES/django.po | grep -c '^msgid' || true
msgattrib --only-fuzzy governance/locale/en/LC_MESSAGES/django.po | grep -c '^msgid' || true
