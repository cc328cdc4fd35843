"""Register a running testbed in the CMDB: servers, a vault credential, pinned host keys.

Used by the test fixture `testbed_cmdb` and by `seed_demo --testbed`. Idempotent: running
it again updates the rows (a testbed restarted with new keys gets the new pins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import transaction

import audit
from cmdb.models import Credential, EnvSchema, HealthCriteria, Institution, Server, System

CREDENTIAL_NAME = "testbed-root-key"


@transaction.atomic
def register_testbed(manifest: dict[str, Any], system: System | None = None) -> list[Server]:
    if system is None:
        institution, _ = Institution.objects.get_or_create(code="TESTBED", defaults={"name": "테스트베드 기관"})
        system, _ = System.objects.get_or_create(
            code="TESTBED-WAS", defaults={"name": "테스트베드 WAS", "institution": institution}
        )
    HealthCriteria.objects.get_or_create(system=system)
    cred_info = manifest["credential"]
    credential = Credential.objects.filter(name=CREDENTIAL_NAME).first() or Credential(name=CREDENTIAL_NAME)
    credential.username = cred_info["username"]
    credential.kind = Credential.Kind.PRIVATE_KEY
    credential.set_secret(Path(cred_info["private_key_path"]).read_text())
    credential.save()
    servers = []
    for srv in manifest["servers"]:
        server, _ = Server.objects.update_or_create(
            server_id=srv["server_id"],
            defaults={
                "system": system,
                "hostname": srv["hostname"],
                "ip": srv["ip"],
                "ssh_port": srv["ssh_port"],
                "ssh_user": cred_info["username"],
                "credential": credential,
                "host_key_fingerprint": srv["host_key_fingerprint"],
                "app_path": srv["app_path"],
                "deploy_path": srv["deploy_path"],
                "backup_path": srv["backup_path"],
                "script_path": srv["script_path"],
                "log_path": srv["log_path"],
                "service_port": srv["http_port"],
                "health_url": srv["health_url"],
                "rolling_group": srv["rolling_group"],
                "canary": srv["canary"],
                "active": True,
            },
        )
        if srv.get("env_schema"):  # a server with its own layout (testbed.layouts): what the CMDB expects
            schema = EnvSchema(server=server, **srv["env_schema"])
            schema.full_clean(exclude=["server"])
            EnvSchema.objects.update_or_create(server=server, defaults=srv["env_schema"])
        servers.append(server)
    # The private key itself never enters the entry: only which rows were touched.
    audit.record(
        None,
        "cmdb.testbed_registered",
        target=system.code,
        payload={"servers": len(servers), "credential": CREDENTIAL_NAME, "base_dir": manifest.get("base_dir")},
    )
    return servers
