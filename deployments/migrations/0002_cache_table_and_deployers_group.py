from django.contrib.auth.management import create_permissions
from django.core.management import call_command
from django.db import migrations

DEPLOYER_PERMISSIONS = ("add_deploymentrequest", "view_deploymentrequest")


def create_cache_table(apps, schema_editor):
    # The cache (spec blobs, inventory, health probe) lives in the database, shared by all workers.
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


def create_deployers_group(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure ours exist now.
    app_config = apps.get_app_config("deployments")
    app_config.models_module = True  # the migration state's stub lacks it; create_permissions checks it
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Deployers")
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="deployments", codename__in=DEPLOYER_PERMISSIONS)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(create_cache_table, migrations.RunPython.noop),
        migrations.RunPython(create_deployers_group, migrations.RunPython.noop),
    ]
