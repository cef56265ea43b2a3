"""The embedded default broker: kombu's filesystem transport, made safe for concurrent use.

kombu's filesystem transport (5.x) writes a message by opening its final file name and then
writing into it, while consumers list the folder, move a file away and read it without any
lock (kombu#1551, open). A consumer can therefore read a message whose producer has created
the file but not written it yet: `JSONDecodeError('Expecting value: line 1 column 1')`, which
Celery treats as unrecoverable - the worker died after about 25 creates in one `make run`
stack (issue 12), and the message was gone.

`atomicfs://` fixes exactly that: a message is written under a temporary name that no consumer
looks at, flushed to disk, and renamed to its final name in the same folder (rename is atomic
on POSIX): a consumer sees a complete message or none. A consumer takes a message by renaming
it out of the queue folder, so two consumers never get the same one. A file that still does
not decode (written by something else) is moved to `<processed>/undecodable/` and logged,
never fatal. `bench/broker_soak.py` measures both transports under concurrent producers.

Registered as the kombu transport alias `atomicfs` when `portal.celery` is imported.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

ALIAS = "atomicfs"
TEMPORARY_PREFIX = ".writing-"


class Channel(filesystem.Channel):
    """Filesystem channel whose messages appear whole or not at all."""

    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        folder = self.data_folder_out
        final = os.path.join(folder, name)
        temporary = os.path.join(folder, TEMPORARY_PREFIX + name + ".part")
        try:
            with open(temporary, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(temporary, final)  # atomic: consumers never see a partial message
        except OSError as exc:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        processed = self.processed_folder if self.store_processed else self._taken_folder()
        for filename in sorted(os.listdir(self.data_folder_in)):
            if filename.startswith(TEMPORARY_PREFIX) or filename.partition(".")[2] != wanted:
                continue
            taken = os.path.join(processed, filename)
            try:
                # rename, not shutil.move: atomic, so exactly one consumer takes each message
                os.rename(os.path.join(self.data_folder_in, filename), taken)
            except OSError:
                continue  # another consumer took it first
            try:
                with open(taken, "rb") as handle:
                    payload = handle.read()
            except OSError as exc:
                raise ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            try:
                message = loads(bytes_to_str(payload))
            except ValueError:
                self._quarantine(taken)
                continue
            if not self.store_processed:
                os.remove(taken)
            return message
        raise Empty()

    def _taken_folder(self) -> str:
        """Where a message is moved while it is read: beside the queue (same filesystem, so the
        move is a rename), not the system temp folder kombu uses by default."""
        folder = os.path.join(self.processed_folder or self.data_folder_in, ".taken")
        os.makedirs(folder, exist_ok=True)
        return folder

    def _quarantine(self, path: str) -> None:
        folder = Path(self.processed_folder or self.data_folder_in) / "undecodable"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(path).name
        os.replace(path, target)
        log.error("broker: a message file that is not JSON was set aside in %s", target)


class Transport(filesystem.Transport):
    """`atomicfs://`: the filesystem transport with atomic message files (see module doc)."""

    Channel = Channel
    global_state = virtual.BrokerState()
    driver_type = ALIAS
    driver_name = ALIAS


def register() -> None:
    """Make `atomicfs://` broker URLs resolve to this transport."""
    TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
