"""The one stand-in the tests use for the broker: a Celery app that sends a task by name.

`TaskSink(task_name, deliver)` replaces a module's `current_app`: `send_task(name, args)`
checks that it is the expected task and calls `deliver(*args)` instead of queueing it, so no
message can reach the shared broker and be picked up by a later test's worker.
"""


class TaskSink:
    def __init__(self, task_name: str, deliver):
        self.task_name = task_name
        self.deliver = deliver

    def send_task(self, name, args=()):
        assert name == self.task_name, f"sent {name!r}, expected {self.task_name!r}"
        self.deliver(*args)
