"""`manage.py sweep_run_folders`: store the state that dead or finished runs left in their
folders on this host (Terraform's errored.tfstate), then remove those folders. Workers do
this at start and after every run; this is for a host whose worker is gone for good."""

from django.core.management.base import BaseCommand

from portal.services.workdirs import root, sweep


class Command(BaseCommand):
    help = "Store state left in run folders of finished runs on this host, then remove those folders."

    def handle(self, *args, **options):
        done = sweep()
        if not done:
            self.stdout.write(f"nothing to sweep in {root()}")
        for name, what in done.items():
            self.stdout.write(f"{name}: {what}")
