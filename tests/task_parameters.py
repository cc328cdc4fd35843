"""Valid playbook parameters per sub-type for tests that file requests through
governance.services.submit_task (the PLAYBOOK_VALIDATOR refuses anything less). Files a
playbook needs are really stored in the attachment store; paths lie under the CMDB roots
tests.factories.ServerFactory gives every server."""

from __future__ import annotations

from governance.attachments import store_attachment


def war(version: str = "1.0.1") -> dict:
    return store_attachment(f"version={version}\n".encode() + b"#" * 1024, "app.war")


def valid_parameters(sub_type: str) -> dict:
    if sub_type == "APP_DEPLOY":
        return {"artifact_sha256": war()["sha256"], "version": "1.0.1"}
    if sub_type == "STATIC_SYNC":
        return {"artifact_sha256": war()["sha256"], "target_path": "static"}  # under the server's app_path
    if sub_type == "SSL_REPLACE":
        cert = store_attachment(b"-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n", "site.crt")
        key = store_attachment(b"-----BEGIN PRIVATE KEY-----\ntest\n-----END PRIVATE KEY-----\n", "site.key")
        return {
            "cert_sha256": cert["sha256"],
            "key_sha256": key["sha256"],
            "cert_path": "/opt/was/app/conf/site.crt",
            "key_path": "/opt/was/app/conf/site.key",
            "https_port": 8443,
        }
    if sub_type == "DATA_CLEANUP":
        return {"script": "purge-sessions", "args": ["TB_SESSION", "created_at < now() - interval '30 days'"]}
    if sub_type == "LOG_CLEANUP":
        return {"directory": "/opt/was/logs"}
    if sub_type == "RAW_COMMAND":
        return {"command": "uptime"}
    return {}  # SERVICE_RESTART, LOG_MINING, LOGROTATE, MEMORY_CHECK, CRON_MANAGE: defaults suffice
