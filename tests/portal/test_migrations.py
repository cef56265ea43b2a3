"""Data migrations, run on rows shaped as the older code left them."""

import importlib

import pytest
from django.apps import apps

from portal.models import RunEvent, RunKind, RunStatus
from tests.factories import make_environment, make_run, make_run_event

pytestmark = pytest.mark.django_db

keep_stage = importlib.import_module("portal.migrations.0005_finished_runs_keep_their_stage")


def test_runs_that_finished_as_done_get_the_stage_they_reached_back():
    environment = make_environment(status="failed")
    failed_in_plan = make_run(environment, status=RunStatus.FAILED, stage="done")
    for stage in ("render", "init", "plan"):
        make_run_event(failed_in_plan, f"Stage: {stage}", kind=RunEvent.Kind.STAGE, data={"stage": stage})
    make_run_event(failed_in_plan, "Error: invalid value")  # a log line after the last stage
    no_events = make_run(environment, status=RunStatus.SUCCEEDED, stage="done")
    destroyed = make_run(environment, kind=RunKind.DESTROY, status=RunStatus.SUCCEEDED, stage="done")
    unknown = make_run(environment, status=RunStatus.FAILED, stage="done")
    make_run_event(unknown, "Stage: finish", kind=RunEvent.Kind.STAGE, data={"stage": "finish"})
    running = make_run(environment, status=RunStatus.RUNNING, stage="apply")

    keep_stage.restore_reached_stage(apps, None)

    stages = {run.pk: run.stage for run in type(running).objects.all()}
    assert stages == {
        failed_in_plan.pk: "plan",
        no_events.pk: "outputs",
        destroyed.pk: "destroy",
        unknown.pk: "outputs",  # not a stage of the pipeline: the last one of its kind
        running.pk: "apply",  # untouched
    }
