"""The model-server presets without a server: request bodies, paths, extraction, and every bad reply or option."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from loadgrade.dataset import Sample
from loadgrade.protocols import (
    ExtractionError,
    OpenAIChatProtocol,
    OpenAICompletionsProtocol,
    OpenInferenceV2Protocol,
    TfServingProtocol,
    TorchServeProtocol,
)
from loadgrade.protocols._openai import usage_counts
from loadgrade.responses import Outcome, interpret_response

ROW = Sample("s-1", [0.0, 16, 2.5], {"id": "s-1", "question": "What is 2+2?", "lang": "en"})


def body(protocol: Any, sample: Sample = ROW) -> Any:
    return json.loads(protocol.build_body(sample))


# ------------------------------------------------------------------------------------------- open-inference-v2


def test_oip_path_from_model_name_and_version() -> None:
    assert OpenInferenceV2Protocol(model_name="digits").path() == "/v2/models/digits/infer"
    assert OpenInferenceV2Protocol(model_name="digits", version="3").path() == "/v2/models/digits/versions/3/infer"
    assert OpenInferenceV2Protocol(model_name="my model").path() == "/v2/models/my%20model/infer"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [0.0, 16.0, 2.5]}),
        ({"datatype": "FP32", "input_name": "x"}, {"name": "x", "shape": [1, 3], "datatype": "FP32"}),
        ({"shape": [3]}, {"shape": [3]}),
    ],
)
def test_oip_request_is_one_named_tensor(options: dict[str, Any], expected: dict[str, Any]) -> None:
    tensor = body(OpenInferenceV2Protocol(model_name="m", **options))["inputs"][0]
    assert {k: tensor[k] for k in expected} == expected


def test_oip_nested_input_is_sent_flat_with_its_shape() -> None:
    tensor = body(OpenInferenceV2Protocol(model_name="m", datatype="INT64"), Sample("a", [[1, 2], [3.0, 4]], {}))
    assert tensor["inputs"][0] == {"name": "input-0", "shape": [1, 2, 2], "datatype": "INT64", "data": [1, 2, 3, 4]}


def test_oip_text_input_as_bytes() -> None:
    tensor = body(OpenInferenceV2Protocol(model_name="m", datatype="BYTES"), Sample("a", "a cat", {}))
    assert tensor["inputs"][0] == {"name": "input-0", "shape": [1], "datatype": "BYTES", "data": ["a cat"]}


@pytest.mark.parametrize(
    ("options", "value", "message"),
    [
        ({}, ["a", "b"], r'datatype FP64 needs finite numbers, got "a"; use datatype BYTES for text'),
        ({}, [1.0, None], "datatype FP64 needs finite numbers, got null"),
        ({}, [True], "datatype FP64 needs finite numbers, got true"),
        ({"datatype": "INT64"}, [1, 2.5], "datatype INT64 needs whole numbers, got 2.5; use FP32 or FP64"),
        ({"datatype": "BYTES"}, [1, 2], "datatype BYTES needs text values, got 1"),
        ({}, [[1, 2], [3]], "ragged list"),
        ({"shape": [1, 4]}, [1, 2, 3], r"protocol.shape \[1, 4\] holds 4 values but the input has 3"),
    ],
)
def test_oip_inputs_that_do_not_fit_say_why(options: dict[str, Any], value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpenInferenceV2Protocol(model_name="m", **options).build_body(Sample("a", value, {}))


REPLY = {
    "model_name": "m",
    "outputs": [
        {"name": "predict_proba", "shape": [1, 3], "datatype": "FP64", "data": [0.1, 0.7, 0.2]},
        {"name": "predict", "shape": [1, 1], "datatype": "INT64", "data": [1]},
    ],
}


def test_oip_extracts_the_named_output_or_the_first() -> None:
    assert OpenInferenceV2Protocol(model_name="m", output_name="predict").extract(REPLY) == 1
    assert OpenInferenceV2Protocol(model_name="m").extract(REPLY) == [0.1, 0.7, 0.2]
    nested = {"outputs": [{"name": "p", "shape": [1, 1], "data": [[4]]}]}
    assert OpenInferenceV2Protocol(model_name="m").extract(nested) == 4


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"predictions": [1]}, "expected an object with an 'outputs' list, got an object with keys: predictions"),
        ({"error": "Model digits not found"}, "the reply says: Model digits not found"),
        ({"outputs": []}, "holds no output tensor"),
        (REPLY | {"outputs": REPLY["outputs"][:1]}, "no output named 'predict'; its outputs are: predict_proba"),
        ({"outputs": [{"name": "predict", "data": []}]}, "output 'predict' has no 'data' values"),
        ([1, 2], "got a list of 2"),
    ],
)
def test_oip_bad_replies_are_extraction_errors(payload: Any, message: str) -> None:
    with pytest.raises(ExtractionError, match=message):
        OpenInferenceV2Protocol(model_name="m", output_name="predict").extract(payload)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model_name": "a/b"}, "model name without '/'"),
        ({"model_name": "m", "version": ""}, "version without '/'"),
        ({"model_name": "m", "datatype": "FP16"}, "Input should be 'FP32', 'FP64', 'INT64' or 'BYTES'"),
        ({"model_name": "m", "shape": [1, 0]}, "shape of positive sizes"),
        ({}, "model_name"),
    ],
)
def test_oip_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OpenInferenceV2Protocol(**options)


# ------------------------------------------------------------------------------------------------- tf-serving


def test_tf_serving_request_and_path() -> None:
    assert TfServingProtocol(model_name="digits").path() == "/v1/models/digits:predict"
    assert TfServingProtocol(model_name="digits", version="2").path() == "/v1/models/digits/versions/2:predict"
    assert body(TfServingProtocol(model_name="m")) == {"instances": [[0.0, 16, 2.5]]}
    assert body(TfServingProtocol(model_name="m", signature_name="s")) == {
        "signature_name": "s",
        "instances": [ROW.input],
    }


def test_tf_serving_extraction() -> None:
    assert TfServingProtocol(model_name="m").extract({"predictions": [[0.2, 0.8]]}) == [0.2, 0.8]
    assert TfServingProtocol(model_name="m", output="classes").extract({"predictions": [{"classes": 3}]}) == 3


@pytest.mark.parametrize(
    ("options", "payload", "message"),
    [
        ({}, {"error": "Servable not found for request"}, "'predictions' list.*the reply says: Servable not found"),
        ({}, {"predictions": [1, 2]}, "expected 'predictions' to hold 1 prediction \\(one instance sent\\), got 2"),
        ({}, {"predictions": []}, "got 0"),
        ({"output": "classes"}, {"predictions": [{"scores": [1]}]}, "object with key 'classes', got an object"),
        ({"output": "classes"}, {"predictions": [3]}, "object with key 'classes', got int 3"),
    ],
)
def test_tf_serving_bad_replies(options: dict[str, Any], payload: Any, message: str) -> None:
    with pytest.raises(ExtractionError, match=message):
        TfServingProtocol(model_name="m", **options).extract(payload)


# ------------------------------------------------------------------------------------------------- torchserve


def test_torchserve_request_and_path() -> None:
    assert TorchServeProtocol(model_name="digits").path() == "/predictions/digits"
    assert TorchServeProtocol(model_name="digits", version="1.0").path() == "/predictions/digits/1.0"
    assert body(TorchServeProtocol(model_name="m")) == [0.0, 16, 2.5]
    assert body(TorchServeProtocol(model_name="m", input_key="data")) == {"data": [0.0, 16, 2.5]}


def test_torchserve_extraction() -> None:
    assert TorchServeProtocol(model_name="m").extract(7) == 7
    assert TorchServeProtocol(model_name="m").extract({"label": 7}) == {"label": 7}
    assert TorchServeProtocol(model_name="m", prediction="label").extract({"label": 7}) == 7
    with pytest.raises(ExtractionError, match="JMESPath 'label' found nothing in an object with keys: class"):
        TorchServeProtocol(model_name="m", prediction="label").extract({"class": 7})
    with pytest.raises(ExtractionError, match="JSON null"):
        TorchServeProtocol(model_name="m").extract(None)
    with pytest.raises(ValidationError, match=r"invalid JMESPath expression 'a\.\[b'"):
        TorchServeProtocol(model_name="m", prediction="a.[b")


def test_torchserve_reply_of_a_bare_number_through_interpret_response() -> None:
    outcome = interpret_response(TorchServeProtocol(model_name="m"), status_code=200, content=b"7", exception=None)
    assert outcome == Outcome(True, prediction="7")
    outcome = interpret_response(TorchServeProtocol(model_name="m"), status_code=200, content=b"null", exception=None)
    assert (outcome.ok, outcome.error_kind) == (False, "extract")


# ---------------------------------------------------------------------------------------------- openai-chat


def test_chat_request_fills_the_templates() -> None:
    protocol = OpenAIChatProtocol(
        model="llm",
        system="Answer in {{lang}}.",
        prompt="Q ({{sample_id}}): {{question}} Features: {{input}}",
        max_tokens=5,
        extra={"seed": 1, "stop": ["\n"]},
    )
    assert body(protocol) == {
        "model": "llm",
        "temperature": 0.0,
        "max_tokens": 5,
        "seed": 1,
        "stop": ["\n"],
        "messages": [
            {"role": "system", "content": "Answer in en."},
            {"role": "user", "content": "Q (s-1): What is 2+2? Features: [0.0,16,2.5]"},
        ],
    }
    assert protocol.path() == "/v1/chat/completions"
    assert "temperature" not in body(OpenAIChatProtocol(model="llm", prompt="p", temperature=None))


def chat(content: Any, **message: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": content, **message}}]}


@pytest.mark.parametrize(
    ("options", "text", "expected"),
    [
        ({}, "  The digit is 7.\n", "The digit is 7."),
        ({"normalize": []}, " 7 ", " 7 "),
        ({"normalize": ["strip", "lower"]}, " Cat\n", "cat"),
        ({"answer_regex": r"digit is (\d)"}, "The digit is 7.", "7"),
        ({"answer_regex": r"\d+"}, "It is 42, surely", "42"),
        ({"answer_regex": r"(yes|no)", "normalize": ["lower"]}, "I think: YES", None),
        ({"answer_regex": r"(?i)(yes|no)", "normalize": ["lower"]}, "I think: YES", "yes"),
        ({"answer_regex": r"digit is (\d)"}, "I cannot tell.", None),
    ],
)
def test_chat_answer_reduction(options: dict[str, Any], text: str, expected: Any) -> None:
    assert OpenAIChatProtocol(model="m", prompt="p", **options).extract(chat(text)) == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"error": {"message": "Rate limit reached", "type": "rate_limit"}}, "the reply says: Rate limit reached"),
        ({"choices": []}, "expected 'choices' to hold at least one object, got a list of 0"),
        ({"choices": [{"text": "7"}]}, "expected choices\\[0\\] to hold a 'message' object, got NoneType null"),
        (chat(None, refusal="I can't help with that"), "content to be text, got NoneType null \\(refusal: I can't"),
        ("plain text", "expected an object with a 'choices' list, got str"),
    ],
)
def test_chat_bad_replies(payload: Any, message: str) -> None:
    with pytest.raises(ExtractionError, match=message):
        OpenAIChatProtocol(model="m", prompt="p").extract(payload)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"answer_regex": "(unclosed"}, "invalid regular expression '\\(unclosed'"),
        ({"extra": {"model": "x", "stream": True}}, "'extra' may not set model, stream"),
        ({"temperature": 3}, "less than or equal to 2"),
        ({"max_tokens": 0}, "greater than 0"),
        ({"normalize": ["upper"]}, "Input should be 'strip' or 'lower'"),
        ({"prompt": ""}, "at least 1 character"),
    ],
)
def test_chat_bad_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OpenAIChatProtocol(**{"model": "m", "prompt": "p", **options})


def test_chat_placeholders_are_checked_against_columns() -> None:
    with pytest.raises(ValueError, match=r"placeholder \{\{colour\}\} names no dataset column"):
        OpenAIChatProtocol(model="m", prompt="{{input}}", system="{{colour}}").check_fields(["id", "x"])
    OpenAIChatProtocol(model="m", prompt="{{input}} {{x}} {{sample_id}}").check_fields(["id", "x"])


def test_usage_counts() -> None:
    reply = chat("7") | {"usage": {"prompt_tokens": 80, "completion_tokens": 5, "total_tokens": 85}}
    assert usage_counts(reply) == {"prompt_tokens": 80, "completion_tokens": 5}
    assert usage_counts(chat("7")) is None
    assert usage_counts({"usage": {"prompt_tokens": "many"}}) is None


# ----------------------------------------------------------------------------------------- openai-completions


def test_completions_request_and_extraction() -> None:
    protocol = OpenAICompletionsProtocol(
        model="m", system="You answer arithmetic.", prompt="Q: {{question}}\nA:", answer_regex=r"(\d+)"
    )
    assert protocol.path() == "/v1/completions"
    assert body(protocol) == {
        "model": "m",
        "temperature": 0.0,
        "prompt": "You answer arithmetic.\n\nQ: What is 2+2?\nA:",
    }
    assert protocol.extract({"choices": [{"text": " 4, of course"}]}) == "4"
    with pytest.raises(ExtractionError, match=r"expected choices\[0\]\.text to be text, got NoneType null"):
        protocol.extract({"choices": [{"message": {"content": "4"}}]})


# ------------------------------------------------------------------------------------------------------ python


@pytest.fixture
def hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module of user functions in a folder that is not on the Python path (like a scenario's folder)."""
    (tmp_path / "lg_test_hooks.py").write_text(
        textwrap.dedent(
            """
            def build(sample):
                return {"x": sample.input}

            def build_text(sample):
                return "id=" + sample.sample_id

            def build_bytes(sample):
                return b"raw"

            def extract(payload):
                return payload["y"]

            NOT_A_FUNCTION = 3
            """
        )
    )
    (tmp_path / "lg_broken_hooks.py").write_text("import no_such_module_anywhere\n")
    yield tmp_path
    for name in ("lg_test_hooks", "lg_broken_hooks"):
        sys.modules.pop(name, None)


def python_protocol(folder: Path, build: str = "lg_test_hooks:build", extract: str = "lg_test_hooks:extract") -> Any:
    from loadgrade.protocols import PythonProtocol

    return PythonProtocol.model_validate(
        {"kind": "python", "build": build, "extract": extract}, context={"base_dir": folder}
    )


def test_python_functions_from_the_scenario_folder(hooks: Path) -> None:
    protocol = python_protocol(hooks)
    assert body(protocol) == {"x": [0.0, 16, 2.5]}
    assert python_protocol(hooks, build="lg_test_hooks:build_text").build_body(ROW) == b"id=s-1"
    assert python_protocol(hooks, build="lg_test_hooks:build_bytes").build_body(ROW) == b"raw"
    assert protocol.extract({"y": 3}) == 3
    assert str(hooks) not in sys.path


def test_python_extract_errors_become_extraction_errors(hooks: Path) -> None:
    with pytest.raises(ExtractionError, match="lg_test_hooks:extract raised KeyError: 'y'"):
        python_protocol(hooks).extract({"z": 3})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        ("lg_test_hooks.build", "expected 'package.module:function', got 'lg_test_hooks.build'"),
        ("lg_test_hooks:", "expected 'package.module:function'"),
        ("no_such_pkg_xyz.mod:f", "cannot import module 'no_such_pkg_xyz.mod': No module named 'no_such_pkg_xyz'"),
        ("lg_test_hooks:missing", "module 'lg_test_hooks' has no attribute 'missing'"),
        ("lg_test_hooks:NOT_A_FUNCTION", "'lg_test_hooks:NOT_A_FUNCTION' is a int, not a function"),
        (
            "lg_broken_hooks:f",
            "importing module 'lg_broken_hooks' failed: ModuleNotFoundError: No module named 'no_such",
        ),
    ],
)
def test_python_functions_that_do_not_resolve(hooks: Path, build: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        python_protocol(hooks, build=build)
