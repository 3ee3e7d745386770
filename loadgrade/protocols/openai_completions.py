"""``openai-completions``: an OpenAI-compatible (legacy) text completions endpoint.

``POST /v1/completions`` with the filled prompt (the system prompt, when given, goes before it, separated by a blank
line); the prediction is ``choices[0].text``, reduced by ``answer_regex`` and ``normalize`` (see
:mod:`loadgrade.protocols._openai`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from loadgrade.dataset import Sample
from loadgrade.protocols._base import ExtractionError, describe, dumps
from loadgrade.protocols._openai import OpenAIBase, fill
from loadgrade.protocols.generic import placeholders


class OpenAICompletionsProtocol(OpenAIBase):
    """One text completion per sample; the completion's text is the answer."""

    kind: Literal["openai-completions"] = "openai-completions"
    system: str | None = Field(None, description="Text put before the prompt, separated by a blank line")
    default_path: ClassVar[str] = "/v1/completions"

    def template_fields(self) -> set[str]:
        return super().template_fields() | (placeholders(self.system) if self.system else set())

    def build_body(self, sample: Sample) -> bytes:
        """
        >>> OpenAICompletionsProtocol(model="m", prompt="Q: {{question}}\\nA:", max_tokens=8).build_body(
        ...     Sample("a", "?", {"question": "2+2?"}))
        b'{"model":"m","temperature":0.0,"max_tokens":8,"prompt":"Q: 2+2?\\\\nA:"}'
        """
        prompt = fill(self.prompt, sample)
        if self.system:
            prompt = f"{fill(self.system, sample)}\n\n{prompt}"
        return dumps({**self.options(), "prompt": prompt}).encode()

    def text_of(self, choice: dict[str, Any]) -> str:
        """
        >>> OpenAICompletionsProtocol(model="m", prompt="p").extract({"choices": [{"text": " 4\\n"}]})
        '4'
        """
        text = choice.get("text")
        if not isinstance(text, str):
            raise ExtractionError(f"expected choices[0].text to be text, got {describe(text)}")
        return text

    def piece_of(self, choice: dict[str, Any]) -> Any:
        return choice.get("text")
