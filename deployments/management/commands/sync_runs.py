from django.core.management.base import BaseCommand

from deployments import services


class Command(BaseCommand):
    help = (
        "Update every active deployment request from GitHub (the webhook's fallback) and close "
        "requests whose run never appeared or never finished. Safe to run from cron on several hosts."
    )

    def handle(self, *args, **options):
        counts = services.deployment_requests_sync()
        summary = (
            "checked {checked}, updated {updated}, marked stale {stale}, expired {expired}, errors {errors}"
        )
        self.stdout.write(summary.format(**counts))
