"""The Django admin of the portal.

Admins manage departments, sandbox accounts, CIDR pools and products here. Everything the
engine writes (environments, runs, events, change plans, endpoints, allocations, Terraform state) is shown
read-only: it changes only through `portal.services`, never by editing rows.
"""

from django.contrib import admin

from portal.admin import changes, cmdb, runs, state  # noqa: F401  (register the model admins)
from portal.admin import access, integrations  # noqa: F401  (API tokens, idempotency, priorities, GitHub)
from portal.admin import notifications  # noqa: F401  (notification targets, write-only URL; deliveries)

admin.site.site_header = "Sandbox portal administration"
admin.site.site_title = "Sandbox portal admin"
admin.site.index_title = "CMDB"
