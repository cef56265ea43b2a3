"""The Notifications page (/notifications/): a signed-in person adds and removes their own
notification targets (an Apprise URL, typed and never shown again) and sees what was sent to
them; their departments' targets (managed by staff in the admin) are listed by name and
address. Thin: every write is `portal.services.notifications`."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal.models import Notification, NotificationEvent, NotificationTarget
from portal.services import notifications as notification_service
from portal.services.errors import ServiceError


class NotificationTargetForm(forms.Form):
    name = forms.CharField(max_length=notification_service.NAME_MAX_LENGTH, help_text="e.g. “My e-mail”, “Team chat”.")
    url = forms.CharField(
        label="Apprise URL", max_length=notification_service.URL_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="mailto://…, slack://…, msteams://…, json://host/path … Stored encrypted; never shown again.",
    )
    events = forms.MultipleChoiceField(choices=NotificationEvent.choices, required=False,
                                       widget=forms.CheckboxSelectMultiple, help_text="None ticked = every event.")


@login_required
@require_http_methods(["GET", "POST"])
def notification_list(request):
    """Own targets (add, remove), the departments' targets, the latest notifications sent to you."""
    form = NotificationTargetForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                target = notification_service.create_target(
                    user=request.user, name=form.cleaned_data["name"], url=form.cleaned_data["url"],
                    events=form.cleaned_data["events"], by=request.user,
                )
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"Target “{target.name}” added ({target.url_hint}).")
                return redirect(reverse("notification-list"))
        status = 400
    department_targets = NotificationTarget.objects.filter(department__members=request.user).select_related("department")
    sent = (Notification.objects.filter(target__user=request.user).select_related("target", "environment__product")
            .order_by("-created_at", "-id")[:20])
    return render(
        request,
        "portal/notifications/list.html",
        {"form": form, "targets": notification_service.targets_of(request.user), "department_targets": department_targets,
         "sent": sent, "nav": "notifications"},
        status=status,
    )


@login_required
@require_POST
def notification_target_delete(request, pk):
    try:
        target = notification_service.delete_target(by=request.user, target_id=pk)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Target “{target.name}” removed.")
    return redirect(reverse("notification-list"))
