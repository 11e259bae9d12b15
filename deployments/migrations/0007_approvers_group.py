from django.contrib.auth.management import create_permissions
from django.db import migrations

# Approvers deploy too, and approve or reject other people's plans for protected environments.
APPROVER_PERMISSIONS = ("add_deploymentrequest", "view_deploymentrequest", "approve_deploymentrequest")


def create_approvers_group(apps, schema_editor):
    # Permissions are normally created after all migrations; make sure the new one exists now.
    app_config = apps.get_app_config("deployments")
    app_config.models_module = True  # the migration state's stub lacks it; create_permissions checks it
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Approvers")
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="deployments", codename__in=APPROVER_PERMISSIONS)
    )


class Migration(migrations.Migration):
    dependencies = [("deployments", "0006_review_before_apply")]

    operations = [migrations.RunPython(create_approvers_group, migrations.RunPython.noop)]
