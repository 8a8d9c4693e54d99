"""`regworker resolve-customer`: ``aws meteringmarketplace resolve-customer`` without the AWS CLI.

The same options (``--registration-token``, ``--cli-input-json``, ``--cli-input-yaml``,
``--generate-cli-skeleton``, ``--endpoint-url``, ``--region``, ``--output``), the same
output (the answer without ``ResponseMetadata``, JSON indented by 4, or tab-separated
text) and the same error lines, so a script written for ``aws`` runs against this
command unchanged. It is meant for checking a token by hand or from a support script,
in the worker's own environment (awscli v1 pins botocore, so it cannot share that venv).

Where it departs from awscli v1, on purpose:

- the YAML options come from AWS CLI v2 (``--cli-input-yaml``, ``--generate-cli-skeleton
  yaml-input`` with v2's comments, ``--output yaml``), as the command's help page has them;
- a bad input document, a bad ``--endpoint-url`` or parameters that fail validation
  exit 2 (bad usage, as v2's 252 also says) rather than v1's 255, and errors are one
  line with no blank line before it;
- error texts never quote the token (v1 echoes a bad ``--cli-input-json`` whole);
- ``--generate-cli-skeleton output`` follows the botocore model installed with the
  worker, which may know output members that an older awscli does not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import botocore.session
import click
import yaml

from worker.cli.errors import UsageError
from worker.ops.resolve_customer import (
    CallFailed,
    InvalidParameters,
    format_output,
    json_skeleton,
    operation_model,
    output_skeleton,
    resolve,
    validate,
    yaml_skeleton,
)

if TYPE_CHECKING:
    from botocore.model import OperationModel

PARAM_FILE_PREFIX: Final = "file://"
EXIT_USAGE: Final = 2
EXIT_CALL_FAILED: Final = 255  # what the AWS CLI answers for a failed call

_DESCRIPTION = """\
Resolve a registration token with ResolveCustomer and print CustomerIdentifier,
ProductCode, CustomerAWSAccountId and LicenseArn as `aws meteringmarketplace
resolve-customer` does. Option values are literal or file://PATH (the file's
whole text). Values given on the command line override the input document's.
Credentials come from the standard AWS variables.
"""
_EPILOG = """\
exit codes:
  0    the token resolved (or a skeleton was printed)
  2    bad usage: a missing or unknown option, a bad --endpoint-url, an
       unreadable or invalid --cli-input-json/--cli-input-yaml, parameters
       that fail validation (aws v1 answers 255 for all but the first;
       regworker keeps 2 for bad usage, as aws v2's 252 also does)
  255  the call failed, as with aws: a service error such as
       InvalidTokenException, no connection, no credentials or no region

examples:
  regworker resolve-customer --registration-token TOKEN --endpoint-url http://127.0.0.1:8642
  regworker resolve-customer --generate-cli-skeleton yaml-input > in.yaml
  regworker resolve-customer --cli-input-yaml file://in.yaml --output text
"""


# The AWS CLI parses its options with argparse, and this command copies its usage errors
# word for word (tests/ops/test_resolve_customer.py checks them against awscli itself).
# So click only hands the raw arguments, --help included, to an argparse parser.
@click.command(
    "resolve-customer",
    help=_DESCRIPTION,
    add_help_option=False,
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": [],
    },
)
@click.pass_context
def command(ctx: click.Context) -> int:
    try:
        args = build_parser().parse_args(ctx.args)
    except SystemExit as exit_:  # argparse's usage error (2) or its --help (0)
        return int(exit_.code or 0)
    return run_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regworker resolve-customer",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--registration-token", metavar="TOKEN", help="the token to resolve")
    inputs = parser.add_mutually_exclusive_group()
    inputs.add_argument(
        "--cli-input-json", metavar="JSON", help="arguments as JSON (the input skeleton's form)"
    )
    inputs.add_argument(
        "--cli-input-yaml", metavar="YAML", help="arguments as YAML (the yaml-input skeleton's)"
    )
    parser.add_argument(
        "--generate-cli-skeleton",
        nargs="?",
        const="input",
        choices=("input", "yaml-input", "output"),
        help="print a sample input (JSON, the default, or YAML), or validate the arguments"
        " and print a sample output, without calling the API",
    )
    parser.add_argument("--endpoint-url", metavar="URL", help="send the call to this URL")
    parser.add_argument("--region", help="AWS region (default: AWS_DEFAULT_REGION)")
    parser.add_argument(
        "--output", choices=("json", "text", "yaml"), default="json", help="output format"
    )
    return parser


def run_command(args: argparse.Namespace) -> int:
    session = botocore.session.get_session()
    operation = operation_model(session)
    try:
        response = _answer(args, session, operation)
    except UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except CallFailed as error:
        print(error, file=sys.stderr)
        return EXIT_CALL_FAILED
    sys.stdout.write(response)
    return 0


def _answer(
    args: argparse.Namespace, session: botocore.session.Session, operation: OperationModel
) -> str:
    """What goes to stdout. Raises UsageError or CallFailed."""
    if args.generate_cli_skeleton == "input":
        return json_skeleton(operation.input_shape)
    if args.generate_cli_skeleton == "yaml-input":
        return yaml_skeleton(operation.input_shape)
    params = call_parameters(args)
    try:
        validate(params, operation.input_shape)
    except InvalidParameters as error:
        raise UsageError(str(error)) from None
    if args.generate_cli_skeleton == "output":
        response = output_skeleton(operation.output_shape)
    else:
        endpoint_url = _endpoint_url(args.endpoint_url)
        response = resolve(session, params, region=args.region, endpoint_url=endpoint_url)
    return format_output(response, args.output)


# ---------------------------------------------------------------- input


def call_parameters(args: argparse.Namespace) -> dict[str, Any]:
    """The input document's parameters, overridden by those given on the command line."""
    if args.cli_input_json is not None:
        params = _json_document(load_value("--cli-input-json", args.cli_input_json))
    elif args.cli_input_yaml is not None:
        params = _yaml_document(load_value("--cli-input-yaml", args.cli_input_yaml))
    else:
        params = None
    if args.registration_token is not None:
        token = load_value("--registration-token", args.registration_token)
        params = {**(params or {}), "RegistrationToken": token}
    if params is None:
        raise UsageError(
            "regworker resolve-customer: error: the following arguments are required:"
            " --registration-token"
        )
    return params


def load_value(option: str, value: str) -> str:
    """A literal value, or the whole text of the file that ``file://PATH`` names."""
    if not value.startswith(PARAM_FILE_PREFIX):
        return value
    path = Path(os.path.expanduser(value.removeprefix(PARAM_FILE_PREFIX)))
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(
            f"Error parsing parameter '{option}': Unable to load paramfile {value}: {error}"
        ) from None


def _json_document(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise UsageError(
            f"Error parsing parameter 'cli-input-json': Invalid JSON: {error}"
        ) from None
    return _mapping("cli-input-json", document)


def _yaml_document(text: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = _yaml_problem(error)
        raise UsageError(
            f"Error parsing parameter 'cli-input-yaml': Invalid YAML received: {problem}"
        ) from None
    return _mapping("cli-input-yaml", {} if document is None else document)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's own text quotes the offending line, which may hold the token."""
    problem = getattr(error, "problem", None) or "does not parse"
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return str(problem)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def _mapping(option: str, document: object) -> dict[str, Any]:
    if not isinstance(document, Mapping):
        raise UsageError(f"Error parsing parameter '{option}': the input must be a mapping")
    return dict(document)


def _endpoint_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise UsageError(
            f'Bad value for --endpoint-url "{value}": scheme is missing.  Must be of'
            " the form http://<hostname>/ or https://<hostname>/"
        )
    return value
