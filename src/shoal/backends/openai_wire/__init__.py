"""OpenAI's chat-completions wire, the one shape llama.cpp and every OpenAI-compatible upstream speak.

``body`` turns a :class:`~shoal.core.types.GenerationRequest` into request fields
(one function for sampling fields, one for tools; the Responses API's names and
shapes are parameters of the same functions). ``chunks`` turns streamed chat
chunks back into :data:`~shoal.core.types.GenerationEvent` values. The local
engine and the upstream backends build on these; nothing here knows either.
"""
