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
import re
import sys
import xml.dom.minidom
import xml.parsers.expat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import boto3
import botocore.session
import yaml
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
)
from botocore.utils import ArgumentGenerator
from botocore.validate import validate_parameters

if TYPE_CHECKING:
    from botocore.model import OperationModel, StructureShape

SERVICE: Final = "meteringmarketplace"
OPERATION: Final = "ResolveCustomer"
PARAM_FILE_PREFIX: Final = "file://"
EXIT_USAGE: Final = 2
EXIT_CALL_FAILED: Final = 255  # what the AWS CLI answers for a failed call
# botocore's type error quotes the value, which for RegistrationToken is the token.
_QUOTED_VALUE: Final = re.compile(r"value: .*?, type:")
_SENTENCE_END: Final = re.compile(r"[.:]+")

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


class UsageError(Exception):
    """The command line or the input document is wrong (exit 2)."""


class CallFailed(Exception):
    """The ResolveCustomer call failed (exit 255)."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "resolve-customer",
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
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    session = botocore.session.get_session()
    operation = session.get_service_model(SERVICE).operation_model(OPERATION)
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
    _validate(params, operation.input_shape)
    if args.generate_cli_skeleton == "output":
        response = output_skeleton(operation.output_shape)
    else:
        response = _call(session, params, region=args.region, endpoint_url=args.endpoint_url)
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


def _validate(params: Mapping[str, Any], shape: StructureShape | None) -> None:
    if shape is None:
        return
    try:
        validate_parameters(params, shape)
    except ParamValidationError as error:
        text = _QUOTED_VALUE.sub("value: (not shown), type:", str(error))
        raise UsageError(text.replace(":\n", ": ", 1).replace("\n", "; ")) from None


# ---------------------------------------------------------------- the call


def _call(
    session: botocore.session.Session,
    params: dict[str, Any],
    *,
    region: str | None,
    endpoint_url: str | None,
) -> dict[str, Any]:
    if endpoint_url is not None and not endpoint_url.startswith(("http://", "https://")):
        raise UsageError(
            f'Bad value for --endpoint-url "{endpoint_url}": scheme is missing.  Must be of'
            " the form http://<hostname>/ or https://<hostname>/"
        )
    try:
        client = boto3.session.Session(botocore_session=session).client(
            SERVICE, region_name=region, endpoint_url=endpoint_url
        )
        answer = client.resolve_customer(**params)
    except NoRegionError:
        raise CallFailed(
            'You must specify a region. You can also configure your region by running "aws'
            ' configure".'
        ) from None
    except NoCredentialsError:
        raise CallFailed(
            "Unable to locate credentials. You can configure credentials by running"
            ' "aws configure".'
        ) from None
    except (ClientError, BotoCoreError) as error:
        raise CallFailed(str(error)) from None
    return {key: value for key, value in answer.items() if key != "ResponseMetadata"}


# ---------------------------------------------------------------- output


def format_output(response: Mapping[str, Any], output: str) -> str:
    if output == "text":
        return "".join(text_lines(response))
    if output == "yaml":
        return yaml.safe_dump(
            dict(response), sort_keys=False, allow_unicode=True, default_flow_style=False
        )
    return json.dumps(response, indent=4, ensure_ascii=False) + "\n"


def text_lines(item: object, identifier: str | None = None) -> list[str]:
    """awscli v1's text format: a mapping's scalar values on one tab-separated line in
    key order (after the upper-cased key of a nested mapping), then each nested value."""
    if isinstance(item, Mapping):
        scalars = [str(value) for key, value in sorted(item.items()) if not _nested(value)]
        lines = []
        if scalars:
            fields = [identifier.upper(), *scalars] if identifier else scalars
            lines.append("\t".join(fields) + "\n")
        for key, value in sorted(item.items()):
            if _nested(value):
                lines += text_lines(value, key)
        return lines
    if isinstance(item, list):
        return [line for element in item for line in text_lines(element, identifier)]
    return [f"{item}\n"]


def _nested(value: object) -> bool:
    return isinstance(value, Mapping | list)


# ---------------------------------------------------------------- skeletons


def json_skeleton(shape: StructureShape | None) -> str:
    skeleton = ArgumentGenerator().generate_skeleton(shape) if shape is not None else {}
    return json.dumps(skeleton, indent=4) + "\n"


def output_skeleton(shape: StructureShape | None) -> dict[str, Any]:
    """A sample answer: each member's name stands in for its value, as aws prints it."""
    if shape is None:
        return {}
    return dict(ArgumentGenerator(use_member_names=True).generate_skeleton(shape))


def yaml_skeleton(shape: StructureShape | None) -> str:
    """As AWS CLI v2 prints it: each top-level member with an end-of-line comment made of
    ``[REQUIRED]`` and the first sentence of its documentation."""
    if shape is None:
        return "{}\n"
    skeleton = ArgumentGenerator().generate_skeleton(shape)
    lines = []
    for name, value in skeleton.items():
        first, *rest = yaml.safe_dump({name: value}, sort_keys=False).splitlines()
        comment = _member_comment(shape, name)
        lines.append(f"{first}  # {comment}" if comment else first)
        lines += rest
    return "\n".join(lines) + "\n"


def _member_comment(shape: StructureShape, name: str) -> str:
    member = shape.members[name]
    parts = ["[REQUIRED]"] if name in shape.required_members else []
    overview = _first_sentence(_strip_markup(member.documentation or ""))
    return " ".join([*parts, overview]).strip()


def _strip_markup(documentation: str) -> str:
    try:
        # The text is botocore's own service model, not outside input.
        dom = xml.dom.minidom.parseString(f"<doc>{documentation}</doc>")  # noqa: S318
    except xml.parsers.expat.ExpatError:
        return documentation
    return _text_of(dom)


def _text_of(node: xml.dom.minidom.Node) -> str:
    if node.nodeType == node.TEXT_NODE:
        return str(node.data)  # type: ignore[attr-defined]
    return "".join(_text_of(child) for child in node.childNodes)


def _first_sentence(text: str) -> str:
    sentence = _SENTENCE_END.split(text, maxsplit=1)[0]
    if not sentence:
        return ""
    return f"{sentence}.".replace("\n", " ").replace("\u2028", " ")
