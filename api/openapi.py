"""The OpenAPI 3.1 document of `/v1`, generated from the operation table and the pydantic models.

Nothing here is written by hand twice: each operation's route, scopes and statuses come from
`ApiService.operations()`, every schema from a model (`core.submission` for request bodies, one per
flow, `api.schemas` for the rest). Served at `/v1/openapi.json`; the fuzzer in CI checks the
running bot against it.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.problems import PROBLEM_JSON
from api.schemas import DecisionBody, ExtendBody, ProblemBody
from api.service import ApiService, Operation

REF = "#/components/schemas/{model}"
_ID_PARAMETER = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"}
_PROBLEM_HEADERS = {
    401: {"WWW-Authenticate": "The authentication scheme: Bearer."},
    429: {"Retry-After": "Seconds until this token may call again."},
    503: {"Retry-After": "Seconds after which to try again."},
}


def _header(description: str, *, required: bool = True) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


def _schemas(service: ApiService, operations: list[Operation]) -> tuple[dict[str, Any], dict[str, str]]:
    """Every component schema, and each flow's request model name."""
    flows = service.submission_models()
    models: list[tuple[type[BaseModel], Any]] = [(m, "validation") for m in flows.values()]
    models.append((DecisionBody, "validation"))
    models.append((ExtendBody, "validation"))
    models.append((ProblemBody, "serialization"))
    models.extend((op.response, "serialization") for op in operations)
    _, top = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    names = {flow: model.__name__ for flow, model in flows.items()}
    return top.get("$defs", {}), names


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        prop.pop("title", None)
        # An optional enum arrives as anyOf [enum, null]: in a query string, absent is the null.
        if "anyOf" in prop:
            choices = [p for p in prop.pop("anyOf") if p.get("type") != "null" and p != {"type": "null"}]
            prop.pop("default", None)
            prop = {**choices[0], **prop} if len(choices) == 1 else {"anyOf": choices, **prop}
        if "$ref" in prop:
            ref = prop.pop("$ref").rsplit("/", 1)[-1]
            prop = {**schema.get("$defs", {}).get(ref, {}), **prop}
            prop.pop("title", None)
            prop.pop("description", None)
        parameters.append({"name": name, "in": "query", "required": False, "description": description, "schema": prop})
    return parameters


def _body(operation: Operation, flow_models: dict[str, str]) -> dict[str, Any] | None:
    if operation.body == "submission":
        refs = [{"$ref": REF.format(model=name)} for name in flow_models.values()]
        schema: dict[str, Any] = {
            "oneOf": refs,
            "discriminator": {
                "propertyName": "flow",
                "mapping": {flow: REF.format(model=name) for flow, name in flow_models.items()},
            },
        }
        return {"required": True, "content": {"application/json": {"schema": schema}}}
    if operation.body in ("decision", "extension"):
        model = "DecisionBody" if operation.body == "decision" else "ExtendBody"
        return {
            "required": operation.body == "extension",
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
        }
    return None


def _responses(operation: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {
        "description": HTTPStatus(operation.success).phrase,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=operation.response.__name__)}}},
    }
    if operation.headers:
        success["headers"] = {k: _header(v) for k, v in operation.headers.items()}
    if operation.links:
        # What a client (and the fuzzer's stateful phase) may call next with the id in this answer.
        success["links"] = {
            target: {"operationId": target, "parameters": {"id": "$response.body#/id"}} for target in operation.links
        }
    responses: dict[str, Any] = {str(operation.success): success}
    for status in operation.problems:
        answer: dict[str, Any] = {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": REF.format(model="ProblemBody")}}},
        }
        headers = _PROBLEM_HEADERS.get(status)
        if headers:
            answer["headers"] = {k: _header(v, required=status != 503) for k, v in headers.items()}
        responses[str(status)] = answer
    return responses


def openapi_document(service: ApiService) -> dict[str, Any]:
    """The whole document for the service's current flows."""
    operations = service.operations()
    components, flow_models = _schemas(service, operations)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "description": f"Token scope needed: {' or '.join(s.value for s in op.scopes)}.",
            "security": [{"bearer": []}],
            "responses": _responses(op),
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": _ID_PARAMETER} for name in op.path_params
        ]
        if op.query is not None:
            parameters += _query_parameters(op.query)
        if parameters:
            item["parameters"] = parameters
        body = _body(op, flow_models)
        if body is not None:
            item["requestBody"] = body
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jitbot API",
            "version": "1",
            "description": (
                "Ask for, decide and follow just-in-time access requests outside Slack. A token acts as its "
                "Slack user under the same policy as a click; errors are application/problem+json."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "bot.py tokens create"}},
        },
    }
