"""ResolveCustomer as ``aws meteringmarketplace resolve-customer`` makes it: the call,
the answer without ``ResponseMetadata`` in the AWS CLI's output formats, and the input
and output skeletons. ``regworker resolve-customer`` (``worker.cli.resolve_customer``)
reads the options and input documents and prints what this module answers.
"""

from __future__ import annotations

import json
import re
import xml.dom.minidom
import xml.parsers.expat
from collections.abc import Mapping
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
# botocore's type error quotes the value, which for RegistrationToken is the token.
_QUOTED_VALUE: Final = re.compile(r"value: .*?, type:")
_SENTENCE_END: Final = re.compile(r"[.:]+")


class InvalidParameters(ValueError):
    """The parameters fail the operation's model; the message never quotes a value."""


class CallFailed(Exception):
    """The ResolveCustomer call failed; the message is the AWS CLI's for the same case."""


def operation_model(session: botocore.session.Session) -> OperationModel:
    return session.get_service_model(SERVICE).operation_model(OPERATION)


def validate(params: Mapping[str, Any], shape: StructureShape | None) -> None:
    """Raises ``InvalidParameters`` as botocore words it, on one line, value not shown."""
    if shape is None:
        return
    try:
        validate_parameters(params, shape)
    except ParamValidationError as error:
        text = _QUOTED_VALUE.sub("value: (not shown), type:", str(error))
        raise InvalidParameters(text.replace(":\n", ": ", 1).replace("\n", "; ")) from None


# ---------------------------------------------------------------- the call


def resolve(
    session: botocore.session.Session,
    params: dict[str, Any],
    *,
    region: str | None,
    endpoint_url: str | None,
) -> dict[str, Any]:
    """The answer without ``ResponseMetadata``. Raises ``CallFailed``."""
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
