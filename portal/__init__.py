"""The portal: Django project and CMDB app (settings, models, services, selectors, tasks,
web UI, REST API, Terraform state endpoint).

Imports point down only: `portal` may import `provisioning`, never the other way round.
"""

from portal.celery import app as celery_app

__all__ = ["celery_app"]
