"""``openai-chat``: an OpenAI-compatible chat completions endpoint (OpenAI, vLLM, SGLang, llama.cpp, Ollama, ...).

``POST /v1/chat/completions`` with an optional system message and the filled prompt as the user message; the
prediction is ``choices[0].message.content``, reduced by ``answer_regex`` and ``normalize`` (see
:mod:`loadgrade.protocols._openai`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from loadgrade.dataset import Sample
from loadgrade.protocols._base import ExtractionError, describe, dumps
from loadgrade.protocols._openai import OpenAIBase, fill
from loadgrade.protocols.generic import placeholders


class OpenAIChatProtocol(OpenAIBase):
    """One chat completion per sample; the assistant's text is the answer."""

    kind: Literal["openai-chat"] = "openai-chat"
    system: str | None = Field(None, description="System prompt template; placeholders as in 'prompt'")
    default_path: ClassVar[str] = "/v1/chat/completions"

    def template_fields(self) -> set[str]:
        return super().template_fields() | (placeholders(self.system) if self.system else set())

    def build_body(self, sample: Sample) -> bytes:
        """
        >>> import json
        >>> body = OpenAIChatProtocol(model="m", prompt="Digit? {{input}}", system="Be brief.").build_body(
        ...     Sample("a", [0, 16], {}))
        >>> json.loads(body)["messages"]
        [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Digit? [0,16]'}]
        """
        messages = [{"role": "system", "content": fill(self.system, sample)}] if self.system else []
        messages.append({"role": "user", "content": fill(self.prompt, sample)})
        return dumps({**self.options(), "messages": messages}).encode()

    def text_of(self, choice: dict[str, Any]) -> str:
        """
        >>> OpenAIChatProtocol(model="m", prompt="p", answer_regex=r"(\\d)").extract(
        ...     {"choices": [{"message": {"role": "assistant", "content": "The digit is 7."}}]})
        '7'
        """
        message = choice.get("message")
        if not isinstance(message, dict):
            raise ExtractionError(f"expected choices[0] to hold a 'message' object, got {describe(message)}")
        content = message.get("content")
        if not isinstance(content, str):
            refusal = message.get("refusal")
            why = f" (refusal: {str(refusal)[:120]})" if refusal else ""
            raise ExtractionError(f"expected choices[0].message.content to be text, got {describe(content)}{why}")
        return content

    def piece_of(self, choice: dict[str, Any]) -> Any:
        delta = choice.get("delta")
        return delta.get("content") if isinstance(delta, dict) else None
