"""Structured outputs and tool schemas as both front-ends check and translate them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jsonschema import SchemaError  # type: ignore[import-untyped]
from jsonschema.validators import validator_for  # type: ignore[import-untyped]

from shoal.core.types import NamedTool, ResponseFormat, ToolChoice, ToolSpec
from shoal.errors import InvalidRequestError

JSON_SCHEMA_TOOL_TYPES = frozenset({"object"})


def check_schema(schema: Any, *, what: str, param: str) -> None:
    """Raise a 400 naming ``what`` and the problem unless ``schema`` is a valid JSON schema."""
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"Invalid schema for {what}: a schema must be a JSON object.", param=param)
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.path)
        raise InvalidRequestError(f"Invalid schema for {what}: {exc.message}" + (f" (at '{where}')." if where else "."),
                                  param=param, code="invalid_json_schema") from exc


def check_tools(tools: Sequence[ToolSpec], param: str = "tools") -> None:
    """Every tool's parameters must be a valid schema of an object; names must be unique."""
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if tool.name in seen:
            raise InvalidRequestError(f"Duplicate tool name '{tool.name}' in 'tools'.", param=param)
        seen.add(tool.name)
        if tool.parameters is None:
            continue
        check_schema(tool.parameters, what=f"function '{tool.name}'", param=f"{param}[{index}].parameters")
        kind = tool.parameters.get("type")
        if kind is not None and kind not in JSON_SCHEMA_TOOL_TYPES:
            raise InvalidRequestError(f"Invalid schema for function '{tool.name}': the parameters must be a schema "
                                      f"of type 'object', not '{kind}'.", param=f"{param}[{index}].parameters")


def check_tool_choice(choice: ToolChoice, tools: Sequence[ToolSpec]) -> ToolChoice:
    """``choice`` if the tools can satisfy it: ``required`` needs a tool, a named choice needs that tool."""
    if choice == "required" and not tools:
        raise InvalidRequestError("tool_choice 'required' needs at least one tool in 'tools'.", param="tool_choice")
    if isinstance(choice, NamedTool) and choice.name not in {t.name for t in tools}:
        raise InvalidRequestError(f"tool_choice names the function '{choice.name}', which is not in 'tools'.",
                                  param="tool_choice")
    return choice


def json_schema_format(name: str, schema: dict[str, Any], strict: bool | None, description: str | None,
                       param: str) -> ResponseFormat:
    """A checked ``json_schema`` response format."""
    check_schema(schema, what=f"response_format '{name}'", param=param)
    return ResponseFormat("json_schema", name=name, schema=schema, strict=bool(strict), description=description)
