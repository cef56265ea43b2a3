"""A finished run keeps the stage it reached (issue 13). Runs that finished before then say
`done`; give each back the last stage it entered, read from its stage events, so the stage bar
and the rollback rules ("had it reached apply?") read one field. Then drop `done`."""

from django.db import migrations, models

STAGES = {"queued", "dispatched", "render", "init", "plan", "apply", "outputs", "destroy"}


def restore_reached_stage(apps, schema_editor):
    Run = apps.get_model("portal", "Run")
    RunEvent = apps.get_model("portal", "RunEvent")
    for run in Run.objects.filter(stage="done").only("pk", "kind").iterator():
        data = (
            RunEvent.objects.filter(run_id=run.pk, kind="stage").order_by("-seq").values_list("data", flat=True).first()
        )
        stage = data.get("stage") if isinstance(data, dict) else None
        if stage not in STAGES:
            # No stage event left: the last stage of its kind (a finished run got through it).
            stage = "destroy" if run.kind in ("destroy", "rollback") else "outputs"
        Run.objects.filter(pk=run.pk).update(stage=stage)


def forwards_only(apps, schema_editor):
    """Going back needs nothing: every stage kept is also a valid stage before 0005."""


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0004_verbose_name_plurals"),
    ]

    operations = [
        migrations.RunPython(restore_reached_stage, forwards_only),
        migrations.AlterField(
            model_name="run",
            name="stage",
            field=models.CharField(
                choices=[
                    ("queued", "Queued"), ("dispatched", "Waiting for a worker"), ("render", "Render"),
                    ("init", "Init"), ("plan", "Plan"), ("apply", "Apply"), ("outputs", "Outputs"),
                    ("destroy", "Destroy"),
                ],
                default="queued",
                max_length=12,
            ),
        ),
    ]
