"""The help texts of ``regworker dlq`` and its actions."""

from __future__ import annotations

DESCRIPTION = """\
Inspect and replay the dead-letter queue. Every tool hands the messages it looked at
back at once (visibility 0); only `replay` and `redrive` move anything.
Reasons: the worker's dlq_reason attribute, or "Unknown (redrive policy)" for messages
the queue's own redrive policy moved after a crash (select those with --reason Unknown).
dlq_* attributes are read only from the worker's own letters (sent by the worker, with
its whole set of attributes, never moved by a redrive policy): a sender's are ignored."""

SETTINGS_NOTE = """\
Queues: --dlq-url (else REGWORKER_DLQ_URL), --to (else REGWORKER_QUEUE_URL).
Region: --region, else REGWORKER_AWS_REGION, AWS_REGION, AWS_DEFAULT_REGION, the AWS
profile's region, else us-east-1. Endpoints and credentials: the standard AWS variables
(AWS_ENDPOINT_URL_SQS, AWS_PROFILE, ...), or --localstack.
Exit codes: 0 ok, 1 failure, 2 bad usage or settings, 130 interrupted."""

DLQ_EPILOG = f"""\
examples:
  regworker dlq stats
  regworker dlq peek --reason RetriesExhausted --max 5
  regworker dlq replay --reason RetriesExhausted --older-than 1h --dry-run
  regworker dlq replay --rate 20 --audit-log replay.jsonl
  regworker dlq redrive --wait

{SETTINGS_NOTE}"""

NO_SOURCE_HINT = (
    "regworker dlq redrive: without --to, only messages the redrive policy moved know their"
    " source queue; the ones the worker dead-lettered need --to (or REGWORKER_QUEUE_URL)"
)

STATS_EPILOG = f"""\
examples:
  regworker dlq stats
  regworker dlq stats --json | jq .by_reason
  regworker dlq stats --localstack --dlq-url http://localhost:4566/000000000000/regs-dlq

Counts every message: each is held invisible for a moment, then handed back at once.

{SETTINGS_NOTE}"""

PEEK_EPILOG = f"""\
examples:
  regworker dlq peek
  regworker dlq peek --reason MalformedMessage --max 3
  regworker dlq peek --json | jq '.messages[].error'

Tokens show only as a 12-hex sha256 prefix. A body shows no text at all: one that
parses, its non-secret fields in --json (format, offer type, correlation id,
received_at); one that does not, its length, its sha256 prefix and why it does not
parse. Reasons and
errors are read only from the worker's own letters: a message the redrive policy moved
shows as Unknown, whatever dlq_* attributes its sender gave it. Nothing is consumed.

{SETTINGS_NOTE}"""

REPLAY_EPILOG = f"""\
examples:
  regworker dlq replay --dry-run
  regworker dlq replay --reason RetriesExhausted --reason Unknown --max 100
  regworker dlq replay --older-than 2h --rate 20 --audit-log replay.jsonl
  regworker dlq replay --reason InvalidToken        # terminal reasons only when named
  regworker dlq replay --reason MalformedMessage    # so are bodies that do not parse
  regworker dlq replay --to https://sqs.us-east-1.amazonaws.com/123456789012/regs-staging

Each message is sent with its original body and the sender's attributes (dlq_* ones
dropped, replay_count + 1), and deleted from the DLQ only once its send succeeded.
InvalidToken and ExpiredToken (tokens that can never resolve) and MalformedMessage
(bodies that can never parse, kept as evidence) are skipped unless named with --reason
or --include-terminal; the summary counts them. A reason counts only on the worker's
own letters: what the redrive policy moved is Unknown, whatever dlq_reason it carries.
A message whose replay_count has reached --max-replays is refused and listed; that
count is read from the message, so its sender can set it. FIFO:
the group id is kept and the deduplication id is the DLQ message id + replay count.
Ctrl-C stops after the current batch; a second Ctrl-C abandons that batch (what is
held is still handed back at once). Either way a message can end up in both queues,
never in neither.

{SETTINGS_NOTE}"""

REDRIVE_EPILOG = f"""\
examples:
  regworker dlq redrive --wait
  regworker dlq redrive --to arn:aws:sqs:us-east-1:123456789012:regs --rate 50 --wait

SQS's native move task: fast, but no filtering, no dry run and no replay_count (use
`regworker dlq replay` for those). --to defaults to REGWORKER_QUEUE_URL; with neither,
messages go back to the queues they came from, which only works for those the redrive
policy moved (the ones the worker dead-letters itself have no source on record).
moto lacks StartMessageMoveTask; LocalStack and AWS have it.

{SETTINGS_NOTE}"""
