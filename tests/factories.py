"""factory_boy factories for the CMDB and users. Add app-specific ones in tests/<app>/factories.py."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from cmdb.models import Credential, Institution, Server, System, SystemOwner
from cmdb.roles import ROLES


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-Guardia-1")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        """UserFactory(role="team_lead") puts the user in that role's group; a name that is not
        a role (cmdb.roles.ROLES) is refused rather than made into a group of that name."""
        if extracted:
            if extracted not in ROLES:
                raise ValueError(f"unknown role {extracted!r}; roles are {', '.join(ROLES)}")
            group, _ = Group.objects.get_or_create(name=extracted)
            self.groups.add(group)


class InstitutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Institution

    code = factory.Sequence(lambda n: f"INST{n:03d}")
    name = factory.Sequence(lambda n: f"기관{n}")
    tier = 2


class SystemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = System

    code = factory.Sequence(lambda n: f"SYS{n:03d}")
    name = factory.Sequence(lambda n: f"시스템{n}")
    institution = factory.SubFactory(InstitutionFactory)


class CredentialFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Credential
        skip_postgeneration_save = True  # the secret hook saves once itself

    name = factory.Sequence(lambda n: f"cred{n}")
    username = "deploy"
    kind = Credential.Kind.PASSWORD

    @factory.post_generation
    def secret(self, create, extracted, **kwargs):
        self.set_secret(extracted or "s3cret-Pa55word!")
        if create:
            self.save()


class ServerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Server

    server_id = factory.Sequence(lambda n: f"srv-{n:04d}")
    system = factory.SubFactory(SystemFactory)
    hostname = factory.LazyAttribute(lambda o: f"{o.server_id}.local")
    ip = factory.Sequence(lambda n: f"10.0.{n // 250}.{n % 250 + 1}")
    # CMDB roots, so every playbook can render its plan (paths are confined under them).
    app_path = "/opt/was/app"
    deploy_path = "/opt/was/deploy"
    backup_path = "/opt/was/backup"
    script_path = "/opt/was/bin"
    log_path = "/opt/was/logs/catalina.out"
    service_port = 8080


class SystemOwnerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SystemOwner

    system = factory.SubFactory(SystemFactory)
    owner = factory.SubFactory(UserFactory, role="team_lead")
    deputy = factory.SubFactory(UserFactory, role="team_lead")
    supervisor = factory.SubFactory(UserFactory, role="supervisor")


def governance_world(owner_username: str = "owner"):
    """One tier-2 institution with a PM and a site manager, one system with owner, deputy and
    supervisor, two servers, and one user of every other role (shared by the governance and
    console tests)."""
    from types import SimpleNamespace

    pm = UserFactory(username="pm", role="pm")
    inst = InstitutionFactory(code="MOEF", name="기획재정부", tier=2, pm=pm)
    system = SystemFactory(code="BUDGET", name="예산시스템", institution=inst)
    ownership = SystemOwnerFactory(
        system=system,
        owner=UserFactory(username=owner_username, role="team_lead"),
        deputy=UserFactory(username="deputy", role="team_lead"),
        supervisor=UserFactory(username="supervisor", role="supervisor"),
    )
    requester = UserFactory(username="field", role="site_manager")
    inst.site_managers.add(requester)  # site managers file requests for their own institutions
    return SimpleNamespace(
        inst=inst,
        system=system,
        ownership=ownership,
        pm=pm,
        owner=ownership.owner,
        deputy=ownership.deputy,
        supervisor=ownership.supervisor,
        requester=requester,
        security=UserFactory(username="secoff", role="security_officer"),
        auditor=UserFactory(username="auditor", role="auditor"),
        admin=UserFactory(username="admin", role="admin"),
        outsider=UserFactory(username="otherlead", role="team_lead"),
        servers=[ServerFactory(system=system, server_id=f"was-{i}") for i in (1, 2)],
    )


def file_task(world, sub_type: str = "MEMORY_CHECK", **fields):
    """File a request through governance.services.submit_task for a ``governance_world()``: as
    its field user, for its system and servers, with valid parameters for the sub-type, unless
    ``fields`` name others (requester, system, targets, parameters, title, sr_number, ...)."""
    from governance import services
    from tests.task_parameters import valid_parameters

    fields.setdefault("title", "예산시스템 요청")
    fields.setdefault("targets", world.servers)
    fields.setdefault("parameters", valid_parameters(sub_type))
    requester = fields.pop("requester", world.requester)
    return services.submit_task(requester, system=fields.pop("system", world.system), sub_type=sub_type, **fields)


def named_file(content: bytes, name: str = "app-2.0.0.war"):
    """An in-memory file with a name, as the REST client uploads it in a multipart body."""
    import io

    handle = io.BytesIO(content)
    handle.name = name
    return handle


def attachment_listing() -> set[str]:
    """Every entry of the attachment store, temporaries included (empty before the first upload)."""
    from governance.attachments import attachment_root

    root = attachment_root()
    return {p.name for p in root.iterdir()} if root.exists() else set()


def war_bytes(version: str = "2.0.0", padding: int = 0) -> bytes:
    """A small real WAR (zip with META-INF/MANIFEST.MF) for upload tests. ``version=X`` is
    stored uncompressed so the testbed's WAS stand-in, which greps the bytes, serves X;
    ``padding`` adds an incompressible-looking entry of that many bytes."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        stamp = (2026, 1, 1, 0, 0, 0)
        for name, data, method in [
            (
                "META-INF/MANIFEST.MF",
                f"Manifest-Version: 1.0\r\nImplementation-Version: {version}\r\n\r\n".encode(),
                zipfile.ZIP_DEFLATED,
            ),
            ("WEB-INF/classes/version.properties", f"version={version}\n".encode(), zipfile.ZIP_STORED),
            ("padding.bin", b"#" * padding, zipfile.ZIP_STORED),
        ]:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = method
            archive.writestr(info, data)
    return buffer.getvalue()
