"""Structured outputs and tool schemas as both front-ends check and translate them.

Two kinds of checks, for two costs:

* cheap ones, run while translating: tool names, the number of tools, and the
  *size* of every schema that may reach a grammar compiler (:class:`SchemaLimits`).
  llama.cpp compiles a schema into a grammar on the thread that runs every slot
  of the model, and a wide ``anyOf``/``enum`` or a crowd of optional properties
  makes that grammar costly to build and to sample with: one request could stall
  everybody else on the model. The caps keep the worst admitted grammar cheap
  (``benchmarks/bench_grammar_stall.py``) and apply to every deployment alike.
* the JSON-schema validity check (jsonschema's ``check_schema``, about a
  millisecond per tool), run once per request in a worker thread by
  :func:`validate_schemas`, so the event loop keeps serving others meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from jsonschema import SchemaError  # type: ignore[import-untyped]
from jsonschema.validators import validator_for  # type: ignore[import-untyped]

from shoal.core.types import NamedTool, ResponseFormat, ToolChoice, ToolSpec
from shoal.errors import InvalidRequestError
from shoal.protocol.common import MAX_TOOLS

JSON_SCHEMA_TOOL_TYPES = frozenset({"object"})

_BRANCH_KEYS = ("anyOf", "oneOf", "enum")
# Keys whose value is one subschema, or a list / map of subschemas; a step into
# ``properties``, ``items`` and friends is one level of nesting of the data.
_NESTING_ONE = frozenset({"items", "additionalProperties", "contains", "unevaluatedProperties",
                          "unevaluatedItems", "propertyNames", "not", "if", "then", "else"})
_NESTING_MANY = frozenset({"properties", "patternProperties", "prefixItems", "dependentSchemas"})
_FLAT_MANY = frozenset({"anyOf", "oneOf", "allOf", "$defs", "definitions"})
MAX_SCHEMA_LEVELS = 64
"""Schema objects inside one another, wrappers included (``depth`` counts only the data's nesting)."""


@dataclass(frozen=True)
class SchemaLimits:
    """What the schemas of one request may add up to.

    *Constrained* schemas are compiled into a grammar: the output format's, and
    the tools' under a forced call (``tool_choice: "required"``: all of them, in
    an ``anyOf``; a named tool: that one). Their branches and properties decide
    what every sampled token costs the model's shared thread, so they are capped
    tightly; tools under ``auto`` only count for bytes and depth.
    Measured in docs/benchmarks/grammar-stall.md: at these caps a grammar request
    slows a plain request on the other slot about as much as another plain request
    does; 256 enum values already cost twice that. OpenAI's Structured Outputs
    allow more (5,000 properties, 1,000 enum values); depth 10 is theirs.
    """

    schema_bytes: int = 128 * 1024
    """Compact JSON bytes of all the schemas (tools' parameters and the format)."""
    branches: int = 64
    """``anyOf`` + ``oneOf`` alternatives + ``enum`` values, summed over the constrained schemas."""
    properties: int = 128
    """Object properties, summed over the constrained schemas (optional ones cost llama.cpp most)."""
    depth: int = 10
    """Levels of nesting (properties, items...) of any one schema."""
    required_tools: int = 16
    """Tools a forced call (``tool_choice: "required"`` or named) may choose among: an ``anyOf`` over them."""

    def describe(self) -> str:
        """The limits in words, for docs and benchmark reports."""
        return (f"{self.schema_bytes:,} schema bytes, {self.branches} anyOf/oneOf/enum branches, "
                f"{self.properties:,} properties, depth {self.depth}, {MAX_TOOLS} tools, "
                f"{self.required_tools} tools under a forced tool_choice")


LIMITS = SchemaLimits()


@dataclass
class SchemaShape:
    """How big a set of schemas is, in the units of :class:`SchemaLimits`."""

    schema_bytes: int = 0
    branches: int = 0
    properties: int = 0
    depth: int = 0


def _measure(schema: Any, shape: SchemaShape, limits: SchemaLimits, constrained: bool) -> str | None:
    """Add ``schema`` to ``shape``; the name of the first limit it crosses, or None.

    Iterative, and it stops at the first limit crossed, so a hostile schema costs
    no more than an admitted one to look at. ``depth`` counts the data's nesting
    (a step into ``properties`` or ``items``); wrappers such as ``anyOf`` count
    towards :data:`MAX_SCHEMA_LEVELS` only.
    """
    stack: list[tuple[Any, int, int]] = [(schema, 1, 1)]
    while stack:
        node, depth, levels = stack.pop()
        if not isinstance(node, dict):
            continue
        shape.depth = max(shape.depth, depth)
        if depth > limits.depth or levels > MAX_SCHEMA_LEVELS:
            return "depth"
        if constrained:  # compiled into a grammar: its alternatives and properties cost every token
            for key in _BRANCH_KEYS:
                value = node.get(key)
                if isinstance(value, list):
                    shape.branches += len(value)
            if shape.branches > limits.branches:
                return "branches"
        props = node.get("properties")
        if constrained and isinstance(props, dict):
            shape.properties += len(props)
            if shape.properties > limits.properties:
                return "properties"
        for key, value in node.items():
            if key in _NESTING_ONE:
                stack.append((value, depth + 1, levels + 1))
            elif key in _NESTING_MANY or key in _FLAT_MANY:
                step = 1 if key in _NESTING_MANY else 0
                children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
                stack.extend((child, depth + step, levels + 1) for child in children)
    return None


def check_schema_sizes(schemas: Sequence[tuple[Any, str, bool]], limits: SchemaLimits = LIMITS) -> SchemaShape:
    """Raise a 400 naming the schema's field and the limit once ``schemas`` exceed ``limits``.

    ``schemas`` are (schema, param, constrained): ``constrained`` for the ones
    compiled into a grammar (the output format, the tools of a forced call), whose
    branches and properties count; every schema counts for bytes and depth. The
    totals run over the request in order; the schema that crosses a limit is named.
    """
    shape = SchemaShape()
    for schema, param, constrained in schemas:
        if schema is None:
            continue
        try:
            shape.schema_bytes += len(orjson.dumps(schema))
        except orjson.JSONEncodeError:  # nested past orjson's 255 levels (in a 'default', say)
            crossed: str | None = "depth"
        else:
            crossed = ("schema_bytes" if shape.schema_bytes > limits.schema_bytes
                       else _measure(schema, shape, limits, constrained))
        if crossed is not None:
            raise InvalidRequestError(_too_big(crossed, limits), param=param, code="schema_too_large")
    return shape


def _too_big(limit: str, limits: SchemaLimits) -> str:
    what = {
        "schema_bytes": f"the schemas of a request may have at most {limits.schema_bytes:,} bytes in total",
        "branches": f"the schemas of a request may have at most {limits.branches} anyOf/oneOf/enum branches "
                    "in total",
        "properties": f"the schemas of a request may have at most {limits.properties:,} object properties in total",
        "depth": f"a schema may nest at most {limits.depth} levels deep ({MAX_SCHEMA_LEVELS} levels counting "
                 "anyOf/allOf wrappers and $defs)",
    }[limit]
    return f"Schema too large: {what}."


def check_schema(schema: Any, *, what: str, param: str) -> None:
    """Raise a 400 naming ``what`` and the problem unless ``schema`` is a valid JSON schema (the costly check)."""
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"Invalid schema for {what}: a schema must be a JSON object.", param=param)
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        where = ".".join(str(p) for p in exc.path)
        raise InvalidRequestError(f"Invalid schema for {what}: {exc.message}" + (f" (at '{where}')." if where else "."),
                                  param=param, code="invalid_json_schema") from exc


SchemaCheck = tuple[Any, str, str]
"""A schema to validate, what it is (``function 'f'``) and its field (``tools[0].parameters``)."""


def _check_all(checks: Sequence[SchemaCheck]) -> None:
    for schema, what, param in checks:
        check_schema(schema, what=what, param=param)


async def validate_schemas(checks: Sequence[SchemaCheck]) -> None:
    """Validate every schema of a request, off the event loop (one worker-thread hop for all of them)."""
    if checks:
        await asyncio.to_thread(_check_all, checks)


def constrained_tools(tools: Sequence[ToolSpec], choice: ToolChoice) -> frozenset[str]:
    """Names of the tools whose schemas a forced call compiles into a grammar (parsers/constrained.py)."""
    if choice == "required":
        return frozenset(t.name for t in tools)
    if isinstance(choice, NamedTool):
        return frozenset({choice.name})
    return frozenset()


def tool_param(param: str, index: int) -> str:
    """The field of a tool's parameters schema."""
    return f"{param}[{index}].parameters"


def check_tools(tools: Sequence[ToolSpec], param: str = "tools") -> None:
    """Unique names, parameters a schema object of type ``object`` (the wire schema caps the count).

    Only the cheap checks: :func:`tool_schema_checks` lists the schemas for :func:`validate_schemas`.
    """
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if tool.name in seen:
            raise InvalidRequestError(f"Duplicate tool name '{tool.name}' in 'tools'.", param=param)
        seen.add(tool.name)
        if tool.parameters is None:
            continue
        if not isinstance(tool.parameters, dict):
            raise InvalidRequestError(f"Invalid schema for function '{tool.name}': a schema must be a JSON object.",
                                      param=tool_param(param, index))
        kind = tool.parameters.get("type")
        if kind is not None and kind not in JSON_SCHEMA_TOOL_TYPES:
            raise InvalidRequestError(f"Invalid schema for function '{tool.name}': the parameters must be a schema "
                                      f"of type 'object', not '{kind}'.", param=tool_param(param, index))


def tool_schema_checks(tools: Sequence[ToolSpec], param: str = "tools") -> list[SchemaCheck]:
    """The tools' parameter schemas, as :func:`validate_schemas` takes them."""
    return [(t.parameters, f"function '{t.name}'", tool_param(param, i))
            for i, t in enumerate(tools) if t.parameters is not None]


def check_tool_choice(choice: ToolChoice, tools: Sequence[ToolSpec],
                      limits: SchemaLimits = LIMITS) -> ToolChoice:
    """``choice`` if the tools can satisfy it: ``required`` needs a tool, a named choice needs that tool.

    A forced call is an ``anyOf`` over the tools (parsers/constrained.py), so
    ``required`` over more than ``limits.required_tools`` tools is a 400 too.
    """
    if choice == "required" and not tools:
        raise InvalidRequestError("tool_choice 'required' needs at least one tool in 'tools'.", param="tool_choice")
    if choice == "required" and len(tools) > limits.required_tools:
        raise InvalidRequestError(f"tool_choice 'required' can choose among at most {limits.required_tools} tools, "
                                  f"and 'tools' has {len(tools)}: name one tool, or send fewer.",
                                  param="tool_choice", code="too_many_tools")
    if isinstance(choice, NamedTool) and choice.name not in {t.name for t in tools}:
        raise InvalidRequestError(f"tool_choice names the function '{choice.name}', which is not in 'tools'.",
                                  param="tool_choice")
    return choice


def json_schema_format(name: str, schema: dict[str, Any], strict: bool | None, description: str | None,
                       param: str) -> ResponseFormat:
    """A ``json_schema`` response format (its schema must still go through :func:`validate_schemas`)."""
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"Invalid schema for response_format '{name}': a schema must be a JSON object.",
                                  param=param)
    return ResponseFormat("json_schema", name=name, schema=schema, strict=bool(strict), description=description)


CHARS_PER_TOKEN_BOUND = 64
"""No tokenizer Shoal serves packs more characters than this into one token, so text longer
than ``context_length * CHARS_PER_TOKEN_BOUND`` cannot fit in the context whatever the model."""


def check_prompt_fits(texts: Iterable[tuple[str, str]], context_length: int | None) -> None:
    """A 400 ``context_length_exceeded`` naming the biggest field when the text cannot fit in ``context_length``.

    ``texts`` are (field, text) pairs. A bound that needs no tokenizer: refused here, a
    multi-megabyte prompt never reaches the engine's template and tokenizer (which
    held on to about half a gigabyte for a 10 MB ``instructions``; see
    docs/benchmarks/big-input-rss.md). Text that passes may still be too long once tokenized:
    the engine says so then.
    """
    if not context_length:
        return
    limit = context_length * CHARS_PER_TOKEN_BOUND
    total = 0
    biggest, biggest_param = 0, None
    for param, text in texts:
        size = len(text)
        total += size
        if size > biggest:
            biggest, biggest_param = size, param
    if total > limit:
        raise InvalidRequestError(
            f"The input is too long for the model's context window of {context_length:,} tokens: "
            f"{total:,} characters in all ('{biggest_param}' has {biggest:,}), and no tokenizer fits more than "
            f"{CHARS_PER_TOKEN_BOUND} characters in a token. Shorten it.",
            param=biggest_param, code="context_length_exceeded")
