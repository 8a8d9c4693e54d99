"""Operators' tools for the dead-letter queue, behind ``regworker dlq stats|peek|replay|redrive``
(the command line is ``worker.cli.dlq``).

Reading never loses or hides a message for long (``scan``). ``replay`` sends a copy to
the source queue first and deletes from the DLQ only what was sent (``replay``);
``redrive`` is SQS's native move task (``redrive``). ``model`` is a DLQ message as read
back and what of it is trusted; ``report`` what stats and peek show; ``selection``,
``pacing``, ``audit`` and ``summary`` the replay's collaborators; ``target`` which DLQ
and how to reach it.
"""
